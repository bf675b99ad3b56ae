"""OnlineTrainer on a tiny GLM with a fake scorer: every estimator updates the actor, not the reference."""

import json
import math

import pytest
import torch
from online_helpers import train_until_stopped

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.errors import ConfigError
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer
from chatglm_rlhf.pipeline.profiles.base import critic_free
from chatglm_rlhf.policy.models import ActorWithReference
from chatglm_rlhf.policy.online.config import PGConfig
from chatglm_rlhf.policy.online.loop import OnlineTrainer

ESTIMATORS = critic_free()

TEXTS = ["What is 2 plus 3?", "The answer is 5.", "List two fruits.", "Apple, pear."] * 10


class FakeScorer:
    """Rewards responses with many 'a's (so k samples of a prompt score differently)."""

    def score(self, samples, responses):
        return [r.count("a") / 3 + 0.1 * (len(r) % 3) for r in responses]


class FlatScorer:
    def score(self, samples, responses):
        return [1.0] * len(responses)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300)


def make_trainer(tok, tmp_path, scorer=None, sft=None, **kw) -> OnlineTrainer:
    base = dict(
        output_dir=str(tmp_path), steps=1, rollout_batch_size=2, k=3, mini_batch_size=3, update_epochs=1,
        forward_batch_size=4, generation=GenerationSettings(max_new_tokens=6, batch_size=8), lr=1e-3,
        prompt_filter=False, ptx_coef=0.0, progress=False, seed=3,
    )  # fmt: skip
    base.update(kw)
    actor = build_tiny_model(tok, hidden_size=32, num_heads=4, num_kv_heads=2, seed=0)
    import copy

    models = ActorWithReference(actor, tok, reference=copy.deepcopy(actor))
    samples = [DialogueSample(id=f"p{i}", prompt=f"What is {i} plus {i + 1}?") for i in range(4)]
    return OnlineTrainer(PGConfig(**base), models, scorer or FakeScorer(), samples, sft)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return [k for k, v in module.state_dict().items() if not torch.equal(before[k], v)]


def rows(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_updates_the_actor_and_logs_finite_metrics(tok, tmp_path, estimator):
    tr = make_trainer(tok, tmp_path, estimator=estimator)
    actor0, ref0 = snapshot(tr.models.actor), snapshot(tr.models.reference)
    result = tr.train()
    assert changed(actor0, tr.models.actor), "the actor must be updated"
    assert not changed(ref0, tr.models.reference), "the reference must stay frozen"
    (row,) = rows(tmp_path)
    for key in ("reward/raw", "reward/train", "advantage/abs_mean", "kl", "kl_k3", "loss/policy",
                "policy/clip_frac", "groups/flat_frac", "response_len", "tokens_per_s/train"):  # fmt: skip
        assert key in row and math.isfinite(row[key]), key
    assert result["steps"] == 1 and (tmp_path / "pg_result.json").exists()
    assert (tmp_path / "model.safetensors").exists()
    # only the reference-baseline estimator generates (and caches) the SFT model's answers
    assert (tmp_path / "reference_baseline.jsonl").exists() == (estimator == "ref_baseline")


def test_group_estimators_give_no_gradient_when_every_sample_scores_the_same(tok, tmp_path):
    # flat rewards, no KL and no ptx: GRPO's advantages are all 0, so the actor must not move
    tr = make_trainer(tok, tmp_path, scorer=FlatScorer(), estimator="grpo", kl_coef=0.0)
    actor0 = snapshot(tr.models.actor)
    tr.train()
    assert not changed(actor0, tr.models.actor)
    assert rows(tmp_path)[0]["groups/flat_frac"] == 1.0


def test_kl_as_a_loss_term_or_in_the_reward(tok, tmp_path):
    # two updates per iteration: the second starts away from the reference, so the k3 term is > 0
    tr = make_trainer(
        tok, tmp_path / "loss", estimator="grpo", kl_coef=0.5, mini_batch_size=3, update_epochs=2
    )
    assert tr.kl_mode == "loss"
    tr.train()
    assert rows(tmp_path / "loss")[0]["loss/kl"] > 0.0
    tr = make_trainer(tok, tmp_path / "reward", estimator="rloo", kl_coef=0.5)
    assert tr.kl_mode == "reward" and tr.loss_agg == "token_mean"
    tr.train()
    assert "loss/kl" not in rows(tmp_path / "reward")[0]  # the KL went into the advantages instead


def test_dr_grpo_defaults_to_the_length_unbiased_reduction(tok, tmp_path):
    tr = make_trainer(tok, tmp_path, estimator="dr_grpo")
    assert (tr.kl_mode, tr.loss_agg) == ("loss", "seq_sum")
    assert make_trainer(tok, tmp_path, estimator="dr_grpo", loss_agg="seq_mean").loss_agg == "seq_mean"


def test_ptx_and_prompt_filter(tok, tmp_path):
    sft = [(DialogueSample(id="s", prompt="List two fruits."), "Apple, pear.")] * 4
    tr = make_trainer(tok, tmp_path, sft=sft, ptx_coef=0.5, ptx_batch_size=2, prompt_filter=True,
                      filter_k=2, filter_eps=0.0)  # fmt: skip
    result = tr.train()
    assert math.isfinite(rows(tmp_path)[0]["loss/ptx"])
    # 1 step x 2 prompts of 4: the filter stops once the run has its 2 (eps 0 keeps every prompt).
    assert result["prompt_filter"] == {"kept": 2, "dropped": 0, "unused": 2}


def test_same_seed_same_run(tok, tmp_path):
    a = make_trainer(tok, tmp_path / "a", estimator="reinforce_pp")
    a.train()
    b = make_trainer(tok, tmp_path / "b", estimator="reinforce_pp")
    b.train()
    assert rows(tmp_path / "a")[0]["reward/raw"] == rows(tmp_path / "b")[0]["reward/raw"]
    sa, sb = a.models.actor.state_dict(), b.models.actor.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_sync_weights_is_called_after_each_iteration(tok, tmp_path):
    from chatglm_rlhf.models.generation import HFGenerator

    class Syncing(HFGenerator):
        synced = 0

        def sync_weights(self, model):
            Syncing.synced += 1

    tr = make_trainer(tok, tmp_path, steps=2)
    tr.generator = Syncing(tr.models.actor, tok)
    tr.train()
    assert Syncing.synced == 2


@pytest.mark.parametrize(
    ("kw", "key"),
    [({"estimator": "grpo", "k": 1}, "k"), ({"mini_batch_size": 7}, "mini_batch_size"),
     ({"update_epochs": 0}, "update_epochs"), ({"kl_coef": -1.0}, "kl_coef"), ({"estimator": "ppo"}, "estimator")],
)  # fmt: skip
def test_bad_settings_name_the_key(tok, tmp_path, kw, key):
    with pytest.raises(ConfigError, match=key):
        make_trainer(tok, tmp_path, **kw)


def test_a_new_estimator_is_a_function_and_a_registration(tok, tmp_path, monkeypatch):
    """No change to the loop: a registered estimator (here: the group's best answer as the baseline)
    trains, with the loop's KL, ptx and logging."""
    from chatglm_rlhf.policy.online import estimators as E

    monkeypatch.setattr(E, "ADV_ESTIMATORS", dict(E.ADV_ESTIMATORS))
    calls = []

    @E.register_adv_est("best_baseline", "r - the group's best score", min_k=2)
    def best_baseline(inp):
        calls.append(inp.scores.shape)
        return E.token_advantages(
            (inp.scores - inp.scores.max(-1, keepdim=True).values).reshape(-1), inp.mask
        ), None

    tr = make_trainer(tok, tmp_path, estimator="best_baseline")
    actor0 = snapshot(tr.models.actor)
    result = tr.train()
    assert calls == [torch.Size([2, 3])]  # 2 prompts x k = 3, once per step
    assert changed(actor0, tr.models.actor) and result["estimator"] == "best_baseline"
    (row,) = rows(tmp_path)
    assert row["advantage/mean"] <= 0.0  # every response is at most its group's best


def test_a_critic_free_run_snapshots_and_resumes_like_ppo(tok, tmp_path):
    """Snapshots (the over-optimisation curve) and resume for a critic-free estimator: ReMax, whose
    baseline (the current policy's greedy answer) is generated inside each step."""
    kw = dict(estimator="remax", steps=3, snapshot_every=1)
    full = make_trainer(tok, tmp_path / "full", **kw)
    full.train()
    assert sorted(p.name for p in (tmp_path / "full" / "snapshots").iterdir()) == ["step_1", "step_2"]
    train_until_stopped(make_trainer(tok, tmp_path / "resumed", save_every=1, **kw), stop_at=2)
    make_trainer(tok, tmp_path / "resumed", save_every=1, resume=True, **kw).train()

    def strip(path):
        return [
            {k: v for k, v in r.items() if not k.startswith(("time", "tokens_per_s"))} for r in rows(path)
        ]

    assert strip(tmp_path / "resumed") == strip(tmp_path / "full")  # the same 3 steps, number for number
