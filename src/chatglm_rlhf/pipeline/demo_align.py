"""The demo pipeline's alignment stages: filter → RM → PPO / DPO → evaluation → report.

Each main stage has an ablation twin (the paper's ablations, checked against the gold judge):

    filter / filter_nobalance   length balancing on / off (the same annotations)
    rm / rm_nobalance           reward models trained on those two files
    ppo                         reference baseline on, ptx on, the balanced RM
    ppo_nobaseline              reward normalisation instead of the reference baseline
    ppo_noptx                   ptx_coef = 0
    ppo_nobalance               PPO against the RM trained without length balancing
    ppo_goldreward              (opt-in) PPO on the gold judge's score: what a perfect RM would give
    dpo                         DPO on RM-labelled pairs from SFT samples
    evaluate                    every policy vs the SFT model on held-out prompts, gold judge
    ceiling                     best-of-n of SFT samples picked by gold vs by the RM: the room the RM
                                leaves PPO and DPO (evaluate/ceiling.py)

After the stages, :func:`finish_run` adds the report's derived numbers (balance per bucket, PPO curves,
the ablation table) to ``metrics.json`` and renders ``report.html`` from it, so ``chatglm-rlhf report
DIR`` re-renders the same page.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

ABLATIONS = ("length_balance", "baseline", "ptx", "gold_reward")


def unprefix(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``{"rm.eval_accuracy": x}`` -> ``{"eval_accuracy": x}``: the runner nests stage metrics itself."""
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in metrics.items()}


class AlignStages:
    """Mixed into :class:`chatglm_rlhf.pipeline.demo.DemoRun` (which provides cfg, out, data, models)."""

    def gold_fn(self, sample, a: str, b: str) -> str:
        """The gold judge's verdict; comparisons carry no gold info, so look the sample up by id."""
        from chatglm_rlhf.tasks.demo import GoldJudge

        if not hasattr(self, "_gold_samples"):
            self._gold_samples = {
                s.id: s for split in ("pref", "rl", "eval") for s in self.samples(f"{split}_prompts")
            }
            self._judge = GoldJudge()
        return self._judge.compare(self._gold_samples.get(sample.id, sample), a, b)

    # -- filter and reward model --------------------------------------------------------------------
    def _filter(self, name: str, balance: str) -> dict:
        from chatglm_rlhf.reward.demo_stages import run_filter_stage

        cfg = dataclasses.replace(self.cfg.filter, balance=balance)
        m = run_filter_stage(self.data / "comparisons.jsonl", self.out / name, cfg, gold_fn=self.gold_fn)
        return unprefix(m, "filter.")

    def stage_filter(self, _: Path) -> dict:
        return self._filter("filter", self.cfg.filter.balance)

    def stage_filter_nobalance(self, _: Path) -> dict:
        return self._filter("filter_nobalance", "none")

    def _rm(self, name: str, filtered: str) -> dict:
        from chatglm_rlhf.data.formats import load_comparisons
        from chatglm_rlhf.data.io import write_jsonl
        from chatglm_rlhf.reward.demo_stages import run_rm_stage, split_by_prompt

        comps, _ = load_comparisons(self.out / filtered / "filtered.jsonl")
        train, held = split_by_prompt(comps, eval_fraction=0.15, seed=self.cfg.world.seed)
        write_jsonl(self.out / name / "train.jsonl", train)
        write_jsonl(self.out / name / "eval.jsonl", held)
        m = run_rm_stage(
            self.models / "sft",
            self.out / name / "train.jsonl",
            self.out / name / "eval.jsonl",
            self.models / name,
            self.cfg.rm,
            gold_fn=self.gold_fn,
        )
        m = unprefix(m, "rm.")
        m["scatter"] = self._rm_scatter(name, held)
        m["filler_probe"] = self._filler_probe(name)
        return m

    def _filler_probe(self, name: str) -> dict:
        """A stricter probe than the held-out gold ties: a good answer with vs without polite filler.

        Gold calls each pair an exact tie; an RM that learned the annotators' taste for filler (or for
        length) prefers the padded answer. Bucket balancing evens out the *marginal* longer-wins rate, so
        it need not remove this bias: the report shows both.
        """
        from chatglm_rlhf.reward.demo_stages import filler_tie_pairs, length_tie_probe
        from chatglm_rlhf.reward.scorer import RewardScorer

        scorer = RewardScorer.from_pretrained(str(self.models / name), device="cpu")
        ties = filler_tie_pairs(self.samples("eval_prompts"), seed=self.cfg.world.seed)
        return length_tie_probe(scorer, ties)

    def _rm_scatter(self, name: str, held) -> str:
        """(response length in words, reward) for every held-out response: the report's scatter plot."""
        from chatglm_rlhf.data.io import write_jsonl
        from chatglm_rlhf.reward.scorer import RewardScorer

        scorer = RewardScorer.from_pretrained(str(self.models / name), device="cpu")
        samples = [c.sample() for c in held for _ in (0, 1)]
        responses = [r for c in held for r in (c.response_a, c.response_b)]
        rewards = scorer.score(samples, responses) if responses else []
        path = self.out / name / "scatter.jsonl"
        write_jsonl(path, [{"length": len(r.split()), "reward": x} for r, x in zip(responses, rewards)])
        return str(path.relative_to(self.out))

    def stage_rm(self, _: Path) -> dict:
        return self._rm("rm", "filter")

    def stage_rm_nobalance(self, _: Path) -> dict:
        return self._rm("rm_nobalance", "filter_nobalance")

    # -- policy optimisation ------------------------------------------------------------------------
    def sft_examples(self):
        from chatglm_rlhf.policy.sft import load_sft_examples

        examples = load_sft_examples(str(self.data / "sft.jsonl"))
        n_eval = max(1, len(examples) // 10)  # the same held-out slice as the SFT stage
        return examples[n_eval:], examples[:n_eval]

    def _ppo(self, name: str, rm: str = "rm", scorer=None, **changes: Any) -> dict:
        from chatglm_rlhf.policy.ppo.stage import run_ppo_stage
        from chatglm_rlhf.reward.scorer import RewardScorer

        train, heldout = self.sft_examples()
        if scorer is None:
            scorer = RewardScorer.from_pretrained(str(self.models / rm), device="cpu")
        cfg = dataclasses.replace(self.cfg.ppo, reward_model=str(self.models / rm), **changes)
        result = run_ppo_stage(
            str(self.models / "sft"),
            str(self.models / name),
            self.samples("rl_prompts"),
            train,
            scorer,
            cfg,
            heldout_examples=heldout,
        )
        result["metrics_path"] = str(Path("models") / name / "metrics.jsonl")
        return result

    def stage_ppo(self, _: Path) -> dict:
        return self._ppo("ppo")

    def stage_ppo_nobaseline(self, _: Path) -> dict:
        return self._ppo("ppo_nobaseline", reward_baseline=False, reward_normalize=True)

    def stage_ppo_noptx(self, _: Path) -> dict:
        return self._ppo("ppo_noptx", ptx_coef=0.0)

    def stage_ppo_nobalance(self, _: Path) -> dict:
        return self._ppo("ppo_nobalance", rm="rm_nobalance")

    def stage_ppo_goldreward(self, _: Path) -> dict:
        # The same recipe with ground truth as the reward (the critic still starts from the RM): the gap
        # to `ppo` is what the RM's errors cost, the gap to the target what PPO and the SFT model leave.
        from chatglm_rlhf.tasks.demo import GoldReward

        return self._ppo("ppo_goldreward", scorer=GoldReward())

    def stage_dpo(self, _: Path) -> dict:
        from chatglm_rlhf.policy.dpo.stage import run_dpo_stage
        from chatglm_rlhf.reward.scorer import RewardScorer

        scorer = RewardScorer.from_pretrained(str(self.models / "rm"), device="cpu")
        cfg = dataclasses.replace(self.cfg.dpo, reward_model=str(self.models / "rm"))
        result = run_dpo_stage(
            self.models / "sft", self.models / "dpo", self.samples("rl_prompts"), scorer, cfg
        )
        return {k: v for k, v in result.items() if k != "model_dir"}

    # -- evaluation and report ----------------------------------------------------------------------
    def policies(self) -> list[str]:
        names = ["ppo", "dpo"]
        if "baseline" in self.cfg.ablations:
            names.append("ppo_nobaseline")
        if "ptx" in self.cfg.ablations:
            names.append("ppo_noptx")
        if "length_balance" in self.cfg.ablations:
            names.append("ppo_nobalance")
        if "gold_reward" in self.cfg.ablations:
            names.append("ppo_goldreward")
        return names

    def stage_evaluate(self, _: Path) -> dict:
        from chatglm_rlhf.evaluate.evaluate import evaluate_models
        from chatglm_rlhf.evaluate.judges import GoldJudgeAdapter
        from chatglm_rlhf.tasks.demo import GoldJudge

        sft, tok = self.load("sft")
        prompts = self.samples("eval_prompts")
        out: dict[str, Any] = {}
        for name in self.policies():
            policy, _ = self.load(name)
            judge = GoldJudgeAdapter(GoldJudge())
            res = evaluate_models(
                policy, sft, tok, prompts, judge, self.cfg.eval, seed=self.cfg.world.seed,
                output_dir=self.out / "eval" / name, progress=self.cfg.progress,
            )  # fmt: skip
            s = res.summary
            score = s.get("mean_score", {})
            out[name] = {
                "gold_win_rate_vs_sft": s["overall"]["win_rate"],
                "ci": s["overall"]["ci"],
                "win_tie_loss": [s["overall"]["win"], s["overall"]["tie"], s["overall"]["loss"]],
                "gold_score": score.get("policy"),
                "sft_gold_score": score.get("baseline"),
                "mean_response_length": s["lengths"]["policy"]["mean_words"],
                "sft_mean_response_length": s["lengths"]["baseline"]["mean_words"],
                "distinct_response_share": s["diversity"]["policy"]["distinct_share"],
                "top_response_share": s["diversity"]["policy"]["top_response_share"],
                "top_response": s["diversity"]["policy"]["top_response"],
                "eval": str(Path("eval") / name / "eval.json"),
            }
            if out[name]["top_response_share"] > 0.5:  # say it where people look, not only in the JSON
                print(
                    f"[evaluate] warning: {name} gives one answer to {out[name]['top_response_share']:.0%} "
                    f"of prompts ({out[name]['top_response']!r}): the policy collapsed onto what its RM "
                    "overrates (reward hacking); compare the win rate with that in mind"
                )
        return out

    def stage_ceiling(self, _: Path) -> dict:
        """Best-of-n from the SFT model's own samples, picked by gold and by the RM (see evaluate/ceiling)."""
        from chatglm_rlhf.evaluate.ceiling import best_of_n_ceiling
        from chatglm_rlhf.reward.scorer import RewardScorer
        from chatglm_rlhf.tasks.demo import GoldJudge

        sft, tok = self.load("sft")
        scorer = RewardScorer.from_pretrained(str(self.models / "rm"), device="cpu")
        return best_of_n_ceiling(
            sft, tok, self.samples("eval_prompts"), scorer, GoldJudge(), self.cfg.ppo.generation,
            dataclasses.replace(self.cfg.eval, greedy=True), n=self.cfg.ceiling_n, max_prompt_tokens=self.cfg.ppo.max_prompt_tokens,
            seed=self.cfg.world.seed,
        )  # fmt: skip


def finish_run(run_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json gets every number the report shows; then report.html is written from it."""
    from chatglm_rlhf.evaluate.report import write_report
    from chatglm_rlhf.utils.training import save_json

    metrics = report_metrics(metrics, run_dir)
    save_json(run_dir / "metrics.json", metrics)
    write_report(run_dir, metrics)
    return metrics


def report_metrics(m: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """metrics.json as the pipeline writes it -> the layout the report reads (see evaluate/report.py)."""
    import json

    ev = m.get("evaluate", {})
    out = dict(m)
    if "filter" in m:
        buckets = json.loads((run_dir / "filter" / "filtered.summary.json").read_text())["length_buckets"]
        out["filter"] = {
            **m["filter"],
            "kept": m["filter"]["kept_labels"],  # labels, like read and dropped: the funnel adds up
            "balance": {
                when: [
                    {"bucket": b["bucket"], "n": b[f"n_{when}"], "longer_wins_rate": b[f"longer_wins_{when}"]}
                    for b in buckets
                    if b[f"longer_wins_{when}"] is not None
                ]  # fmt: skip
                for when in ("before", "after")
            },
        }
    if "rm" in m:
        by_bucket = m["rm"].get("eval", {}).get("accuracy_by_bucket", {})
        out["rm"] = {**m["rm"], "per_bucket": [{"bucket": k, **v} for k, v in by_bucket.items()]}
    if "ppo" in m:
        out["ppo"] = {**m["ppo"], "metrics_path": ppo_curves(run_dir, m["ppo"]["metrics_path"])}
    for name in ("ppo", "dpo"):
        if name in ev:
            out[name] = {**out.get(name, {}), **ev[name]}
            out[name]["eval"] = ev[name]["eval"]
    out["ablations"] = ablation_rows(m)
    return out


def ppo_curves(run_dir: Path, metrics_path: str) -> str:
    """The PPO log's per-step rows under the report's curve names (reward, reward_minus_baseline, ...)."""
    from chatglm_rlhf.data.io import write_jsonl
    from chatglm_rlhf.utils.training import read_metrics

    names = {"reward/raw": "reward", "reward/minus_baseline": "reward_minus_baseline", "kl": "kl",
             "response_len": "response_length"}  # fmt: skip
    rows = [
        {"step": r["step"], **{new: r[old] for old, new in names.items() if old in r}}
        for r in read_metrics(run_dir / metrics_path)
    ]
    write_jsonl(run_dir / "ppo_curves.jsonl", rows)
    return "ppo_curves.jsonl"


def ablation_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's ablations as table rows: each pair of settings with the metrics that tell them apart."""
    ev = m.get("evaluate", {})

    def win(name: str):
        return ev.get(name, {}).get("gold_win_rate_vs_sft")

    def length(name: str):
        return ev.get(name, {}).get("mean_response_length")

    rows = []
    if "rm_nobalance" in m:
        for setting, rm, ppo in (("on", "rm", "ppo"), ("off", "rm_nobalance", "ppo_nobalance")):
            rows.append({"name": "length balancing", "setting": setting,
                         "rm_length_correlation": m.get(rm, {}).get("length_correlation"),
                         "rm_gold_accuracy": m.get(rm, {}).get("gold_accuracy"),
                         "ppo_response_length": length(ppo), "gold_win_rate": win(ppo)})  # fmt: skip
    if "ppo_nobaseline" in m:
        for setting, ppo in (("on", "ppo"), ("off", "ppo_nobaseline")):
            # The std over steps of the mean raw RM score: comparable both ways (the optimised reward
            # is r - r_ref with the baseline and a normalised r without it, on different scales).
            rows.append({"name": "reference baseline", "setting": setting,
                         "reward_std": m.get(ppo, {}).get("reward_std"),
                         "gold_win_rate": win(ppo)})  # fmt: skip
    if "ppo_noptx" in m:
        for setting, ppo in (("on", "ppo"), ("off", "ppo_noptx")):
            rows.append({"name": "ptx loss", "setting": setting,
                         "sft_heldout_loss": m.get(ppo, {}).get("sft_heldout_loss"),
                         "gold_win_rate": win(ppo)})  # fmt: skip
    if "ppo_goldreward" in m:
        for setting, ppo in (("reward model", "ppo"), ("gold judge", "ppo_goldreward")):
            rows.append({"name": "PPO reward", "setting": setting, "gold_win_rate": win(ppo),
                         "top_response_share": ev.get(ppo, {}).get("top_response_share")})  # fmt: skip
    for setting in ("ppo", "dpo"):
        if setting in ev:
            rows.append({"name": "PPO vs DPO", "setting": setting, "gold_win_rate": win(setting),
                         "mean_response_length": length(setting),
                         "top_response_share": ev.get(setting, {}).get("top_response_share")})  # fmt: skip
    return rows
