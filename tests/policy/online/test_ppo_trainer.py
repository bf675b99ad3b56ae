"""OnlineTrainer on a tiny GLM with a fake scorer: updates, frozen reference, reproducibility, resume."""

import json
import math

import pytest
import torch
from online_helpers import train_until_stopped

from chatglm_rlhf.data.schema import DialogueSample
from chatglm_rlhf.errors import ConfigError
from chatglm_rlhf.models.generation import GenerationSettings
from chatglm_rlhf.models.tiny import build_tiny_model, train_tokenizer
from chatglm_rlhf.policy.models import build_seq_batch, lm_forward, response_logprobs
from chatglm_rlhf.policy.online.config import PPOConfig
from chatglm_rlhf.policy.online.critic import build_models
from chatglm_rlhf.policy.online.loop import OnlineTrainer

TEXTS = [
    "What is 2 plus 3?",
    "The answer is 5.",
    "List two fruits.",
    "Apple, pear.",
    "Sorry, I can't help.",
] * 10


class FakeScorer:
    """Rewards responses with many 'a's; prompts whose id starts with 'flat' always score 1.0."""

    def __init__(self):
        self.calls = 0

    def score(self, samples, responses):
        self.calls += 1
        return [
            1.0 if s.id.startswith("flat") else r.count("a") / 3 + 0.1 * len(r) % 1
            for s, r in zip(samples, responses)
        ]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300)


def prompts(n=6, flat=0):
    out = [DialogueSample(id=f"p{i}", prompt=f"What is {i} plus {i + 1}?") for i in range(n)]
    return out + [DialogueSample(id=f"flat{i}", prompt=f"List {i} fruits.") for i in range(flat)]


def make_cfg(tmp_path, **kw) -> PPOConfig:
    base = dict(
        output_dir=str(tmp_path), steps=2, rollout_batch_size=4, mini_batch_size=2, update_epochs=2,
        forward_batch_size=3, generation=GenerationSettings(max_new_tokens=6, batch_size=8), lr=1e-3,
        critic_lr=1e-3, prompt_filter=False, ptx_coef=0.0, progress=False, seed=3,
    )  # fmt: skip
    base.update(kw)
    return PPOConfig(**base)


def make_trainer(tok, tmp_path, shared=False, lora=False, sft=None, scorer=None, **kw):
    actor = build_tiny_model(tok, hidden_size=32, num_heads=4, num_kv_heads=2, seed=0)
    if lora:
        from peft import get_peft_model

        from chatglm_rlhf.models.loading import LoraSettings

        actor = get_peft_model(actor, LoraSettings(r=4, alpha=8).to_peft())
    models = build_models(actor, tok, shared_backbone=shared)
    return OnlineTrainer(make_cfg(tmp_path, **kw), models, scorer or FakeScorer(), prompts(), sft)


def params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module):
    after = module.state_dict()
    return [k for k in before if not torch.equal(before[k], after[k])]


def test_logprobs_of_padded_batch_match_single_sequences(tok):
    model = build_tiny_model(tok, hidden_size=32, num_heads=4, num_kv_heads=2)
    p1, p2 = tok.encode("What is 2 plus 3?"), tok.encode("List two fruits please, now")
    r1, r2 = tok.encode("The answer") + [tok.eos_token_id], tok.encode("Apple, pear, plum")
    batch = build_seq_batch([p1, p2], [r1, r2], tok.pad_token_id)
    lp = response_logprobs(lm_forward(model, batch)[0], batch)
    full = torch.log_softmax(model(torch.tensor([p1 + r1])).logits, -1)[0, len(p1) - 1 : -1]
    expected = full.gather(-1, torch.tensor(r1)[:, None]).squeeze(-1)
    assert torch.allclose(lp[0, : len(r1)], expected, atol=1e-5)
    assert batch.response_mask.tolist() == [[1] * len(r1) + [0] * (len(r2) - len(r1)), [1] * len(r2)]


def test_logprobs_at_a_sampling_temperature_are_those_of_the_tempered_distribution():
    # Hand-made logits: one sequence, two response tokens, a vocabulary of three.
    logits = torch.tensor([[[2.0, 0.0, -2.0], [0.0, 1.0, 0.0]]])
    batch = build_seq_batch([[5]], [[0, 1]], pad_id=9)
    lp = response_logprobs(logits, batch, temperature=0.5)
    # log softmax(logits / 0.5) of the chosen tokens, computed by hand: z = [4, 0, -4] and [0, 2, 0].
    first = 4.0 - math.log(math.exp(4) + 1 + math.exp(-4))
    second = 2.0 - math.log(1 + math.exp(2) + 1)
    assert lp[0].tolist() == pytest.approx([first, second], abs=1e-6)
    assert response_logprobs(logits, batch)[0, 0] == pytest.approx(
        2.0 - math.log(math.exp(2) + 1 + math.exp(-2))
    )


def test_sampling_temperature_must_be_positive(tok, tmp_path):
    with pytest.raises(ConfigError, match="generation.temperature"):
        make_trainer(tok, tmp_path, steps=1, generation=GenerationSettings(max_new_tokens=4, temperature=0.0))


def test_step_updates_actor_and_critic_not_reference(tok, tmp_path):
    tr = make_trainer(tok, tmp_path, steps=1)
    m = tr.models
    actor0, ref0, critic0 = params(m.actor), params(m.reference), params(m.critic)
    result = tr.train()
    assert changed(actor0, m.actor), "the actor must be updated"
    assert changed(critic0, m.critic), "the critic must be updated"
    assert not changed(ref0, m.reference), "the reference must stay frozen"
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and result["steps"] == 1
    for key in ("reward/raw", "reward/train", "reward/minus_baseline", "kl", "entropy", "policy/clip_frac",
                "policy/approx_kl", "loss/value", "response_len", "tokens_per_s/generate", "tokens_per_s/train"):  # fmt: skip
        assert key in rows[0], key
    assert rows[0]["kl_k3"] >= 0.0  # the report's KL curve: the k3 estimate cannot go negative
    # The reference baseline was generated once and cached beside the outputs, for the 1 x 4 prompts
    # this run draws (of 6).
    assert len((tmp_path / "reference_baseline.jsonl").read_text().splitlines()) == 4 < len(prompts())
    assert (tmp_path / "config.json").exists() and (tmp_path / "ppo_result.json").exists()


def test_seeded_runs_are_reproducible(tok, tmp_path):
    a = make_trainer(tok, tmp_path / "a")
    b = make_trainer(tok, tmp_path / "b")
    ra, rb = a.train(), b.train()
    assert ra["reward_series"] == rb["reward_series"] and ra["kl_series"] == rb["kl_series"]
    assert not changed(params(a.models.actor), b.models.actor)


def test_resume_gives_the_same_next_step(tok, tmp_path):
    full = make_trainer(tok, tmp_path / "full", steps=3)
    full.train()

    train_until_stopped(make_trainer(tok, tmp_path / "resumed", steps=3, save_every=1), stop_at=2)
    resumed = make_trainer(tok, tmp_path / "resumed", steps=3, save_every=1, resume=True)
    resumed.train()
    rows_full = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    rows_res = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    drop = (
        "time",
        "time/generate",
        "time/train",
        "time/score",
        "time/forward",
        "time/sync",
        "tokens_per_s/generate",
        "tokens_per_s/train",
    )
    strip = lambda row: {k: v for k, v in json.loads(row).items() if k not in drop}  # noqa: E731
    assert [strip(r) for r in rows_full] == [strip(r) for r in rows_res]
    assert not changed(params(full.models.actor), resumed.models.actor)
    assert not changed(params(full.models.critic), resumed.models.critic)


def test_shared_backbone_trains_both_heads(tok, tmp_path):
    tr = make_trainer(tok, tmp_path, shared=True, steps=1)
    head0, actor0 = params(tr.models.shared.v_head), params(tr.models.actor)
    tr.train()
    assert changed(head0, tr.models.shared.v_head)
    assert changed(actor0, tr.models.actor)
    assert tr.models.critic is None


def test_shared_backbone_with_lora_keeps_one_copy(tok, tmp_path):
    tr = make_trainer(tok, tmp_path, shared=True, lora=True, steps=1)
    head0 = params(tr.models.shared.v_head)
    tr.train()
    assert tr.models.reference is None and tr.models.critic is None
    assert changed(head0, tr.models.shared.v_head)


def test_lora_reference_is_the_base_with_adapter_disabled(tok, tmp_path):
    tr = make_trainer(tok, tmp_path, lora=True, steps=1)
    m = tr.models
    assert m.reference is None
    base = build_tiny_model(tok, hidden_size=32, num_heads=4, num_kv_heads=2, seed=0)
    batch = build_seq_batch(
        [tok.encode("What is 1 plus 2?")], [tok.encode("The answer is 3.")], tok.pad_token_id
    )
    expected = response_logprobs(lm_forward(base, batch)[0], batch)
    lora0 = {k: v for k, v in params(m.actor).items() if "lora_" in k}
    tr.train()
    assert any(not torch.equal(v, m.actor.state_dict()[k]) for k, v in lora0.items()), "adapters must train"
    assert torch.allclose(m.reference_logprobs(batch), expected, atol=1e-5)
    with torch.no_grad():
        trained = response_logprobs(lm_forward(m.actor, batch)[0], batch)
    assert not torch.allclose(trained, expected, atol=1e-5)
    # The saved model is the merged policy (plain weights that from_pretrained loads).
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.allclose(response_logprobs(lm_forward(saved, batch)[0], batch), trained, atol=1e-4)


def test_ptx_is_mixed_into_the_actor_loss(tok, tmp_path):
    sft = [(DialogueSample(id=f"s{i}", prompt="List two fruits."), "Apple, pear.") for i in range(4)]
    with_ptx = make_trainer(tok, tmp_path / "ptx", sft=sft, ptx_coef=1.0, ptx_batch_size=2, steps=1)
    without = make_trainer(tok, tmp_path / "no", sft=sft, ptx_coef=0.0, steps=1)
    r1, _ = with_ptx.train(), without.train()
    row = json.loads((tmp_path / "ptx" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["loss/ptx"] > 0 and "loss_ptx_mean" in r1
    assert "loss/ptx" not in json.loads((tmp_path / "no" / "metrics.jsonl").read_text().splitlines()[0])
    assert changed(params(with_ptx.models.actor), without.models.actor), "ptx must change the update"


def test_prompt_filter_drops_flat_prompts_and_reports(tok, tmp_path):
    actor = build_tiny_model(tok, hidden_size=32, num_heads=4, num_kv_heads=2, seed=0)
    # 2 steps x 4 prompts: the run uses all 7, so every one is decided.
    cfg = make_cfg(tmp_path, prompt_filter=True, filter_k=3, filter_eps=1e-6, steps=2)
    tr = OnlineTrainer(cfg, build_models(actor, tok), FakeScorer(), prompts(n=4, flat=3))
    result = tr.train()
    assert result["prompt_filter"]["dropped"] >= 3
    assert all(not s.id.startswith("flat") for s in tr.prompts.samples)
    rows = [json.loads(x) for x in (tmp_path / "prompt_filter.jsonl").read_text().splitlines()]
    assert len(rows) == 7
    flat = [r for r in rows if r["id"].startswith("flat")]
    assert all(not r["kept"] and "variance" in r["reason"] for r in flat)


def test_prompt_filter_samples_only_what_the_run_needs(tok, tmp_path):
    from chatglm_rlhf.utils.training import epoch_order

    actor = build_tiny_model(tok, hidden_size=32, num_heads=4, num_kv_heads=2, seed=0)
    # 1 step x 2 prompts of 7 (3 flat): prompts are decided in the seeded order until 2 are kept.
    cfg = make_cfg(tmp_path, prompt_filter=True, filter_k=3, filter_eps=1e-6, steps=1, rollout_batch_size=2)
    scorer, pool = FakeScorer(), prompts(n=4, flat=3)
    tr = OnlineTrainer(cfg, build_models(actor, tok), scorer, pool)
    kept = tr.prepare_prompts()
    rep = tr.filter_report
    rows = [json.loads(x) for x in (tmp_path / "prompt_filter.jsonl").read_text().splitlines()]
    order = [pool[i].id for i in epoch_order(7, cfg.seed, 0)]
    assert rep.kept == 2 and len(rows) == rep.kept + rep.dropped == 7 - rep.unused
    assert [r["id"] for r in rows] == order[: len(rows)]  # a prefix of the seeded order
    assert rep.dropped == sum(i.startswith("flat") for i in order[: len(rows)])
    assert [s.id for s in kept.samples] == [r["id"] for r in rows if r["kept"]]
    assert len(tr.baseline) == 2  # the reference answer only for the prompts the run uses
    calls = scorer.calls
    tr.prepare_prompts()  # resumed: the decisions and baselines come from the files
    assert scorer.calls == calls and tr.filter_report.kept == 2


def test_baseline_cache_is_reused(tok, tmp_path):
    scorer = FakeScorer()
    tr = make_trainer(tok, tmp_path, scorer=scorer)
    tr.prepare_prompts()
    calls = scorer.calls
    first = dict(tr.baseline)
    tr.prepare_prompts()  # a resumed run: everything comes from reference_baseline.jsonl
    assert scorer.calls == calls and tr.baseline == first


def test_bad_config_names_the_key(tok, tmp_path):
    from chatglm_rlhf.errors import ConfigError

    with pytest.raises(ConfigError, match="mini_batch_size"):
        make_trainer(tok, tmp_path, mini_batch_size=8)
    with pytest.raises(ConfigError, match="kl_estimator"):
        make_trainer(tok, tmp_path, kl_estimator="k9")


def test_baseline_with_k_answers_is_their_mean(tok, tmp_path):
    tr = make_trainer(tok, tmp_path, baseline_k=3)
    tr.prepare_prompts()
    rows = [json.loads(x) for x in (tmp_path / "reference_baseline.jsonl").read_text().splitlines()]
    assert len(rows) == len(prompts()) and all(len(r["scores"]) == 3 for r in rows)
    for r in rows:
        assert abs(r["score"] - sum(r["scores"]) / 3) < 1e-6
        assert tr.baseline[r["key"]] == r["score"]


def test_baseline_from_filter_is_the_mean_of_the_filters_answers_and_samples_nothing_more(tok, tmp_path):
    from chatglm_rlhf.errors import ConfigError

    scorer = FakeScorer()
    tr = make_trainer(tok, tmp_path, scorer=scorer, prompt_filter=True, filter_k=3, filter_eps=1e-6,
                      baseline_from_filter=True, baseline_k=1)  # fmt: skip
    tr.prepare_prompts()
    rows = [json.loads(x) for x in (tmp_path / "prompt_filter.jsonl").read_text().splitlines()]
    kept = [r for r in rows if r["kept"]]
    assert kept and set(tr.baseline) == {r["key"] for r in kept}
    for r in kept:
        assert abs(tr.baseline[r["key"]] - sum(r["scores"]) / 3) < 1e-6
    assert not (tmp_path / "reference_baseline.jsonl").exists()  # no second pass over the prompts
    assert scorer.calls == 1  # one scoring call: the filter's (make_trainer's prompts need one round)
    assert tr.baseline_noise is None or tr.baseline_noise["reference_answers"] == 3
    with pytest.raises(ConfigError, match="baseline_from_filter needs prompt_filter"):
        make_trainer(tok, tmp_path, baseline_from_filter=True)  # make_cfg's prompt_filter=False
    with pytest.raises(ConfigError, match="reference_model"):
        make_trainer(tok, tmp_path, prompt_filter=True, baseline_from_filter=True, reference_model="sft")


def test_rollout_forward_runs_in_eval_mode_and_restores_train_mode(tok, tmp_path):
    from chatglm_rlhf.policy.online import rollout as R

    tr = make_trainer(tok, tmp_path)
    m = tr.models
    for mod in m.trainable:
        mod.train()
    seen = []
    real = m.policy

    def spy(*a, **kw):
        seen.append([mod.training for mod in m.trainable])
        return real(*a, **kw)

    m.policy = spy
    from chatglm_rlhf.policy.models import build_seq_batch

    gens = [
        g[0]
        for g in tr.generator.generate([tok.encode("What is 1 plus 2?")] * 2, 1, tr.cfg.generation, seed=0)
    ]
    batch = build_seq_batch([g.prompt_ids for g in gens], [g.response_ids for g in gens], tok.pad_token_id)
    R.forward_in_chunks(m, batch, chunk=1, values=True)
    assert seen and not any(any(flags) for flags in seen)  # old log-probs / values without dropout
    assert all(mod.training for mod in m.trainable)  # and the update's train mode is back


@pytest.mark.parametrize("lora_r", [0, 4])
def test_reference_model_is_loaded_apart_from_the_start(tok, tmp_path, lora_r):
    """A later feedback round starts from the previous round's policy (``model``) with its KL to the SFT
    model (``reference_model``): the reference must be that model, with or without LoRA."""
    from chatglm_rlhf.policy.models import load_actor_and_reference

    start, sft = tmp_path / "round1", tmp_path / "sft"
    for path, seed in ((start, 0), (sft, 1)):
        build_tiny_model(tok, hidden_size=32, num_heads=4, num_kv_heads=2, seed=seed).save_pretrained(path)
        tok.save_pretrained(path)
    batch = build_seq_batch(
        [tok.encode("What is 1 plus 2?")], [tok.encode("The answer is 3.")], tok.pad_token_id
    )

    def logprobs(model):
        with torch.no_grad():
            return response_logprobs(lm_forward(model, batch)[0], batch)

    from transformers import AutoModelForCausalLM

    want_ref, want_actor = (logprobs(AutoModelForCausalLM.from_pretrained(p)) for p in (sft, start))
    roles = load_actor_and_reference(
        make_cfg(tmp_path, model=str(start), reference_model=str(sft), lora_r=lora_r), "cpu"
    )
    with roles.reference_lm() as ref:
        assert torch.allclose(logprobs(ref), want_ref, atol=1e-5)
    assert torch.allclose(logprobs(roles.actor), want_actor, atol=1e-5)
    assert not torch.allclose(want_ref, want_actor, atol=1e-3)
    same = load_actor_and_reference(make_cfg(tmp_path, model=str(start), lora_r=lora_r), "cpu")
    with same.reference_lm() as ref:  # without reference_model: the start itself, as before
        assert torch.allclose(logprobs(ref), want_actor, atol=1e-5)
