"""The real profile's alignment and evaluation stages, and its report (see :mod:`pipeline.real`).

No gold judge exists for real data, so the evaluation uses three judges that fail in different ways:

* the **judge RM**, trained only on the judge_train split and never used in training: the stand-in for
  gold (Gao et al. 2022). A policy that over-optimises the proxy gains by the proxy but not by it;
* the **proxy RM** the policies were trained against (optimistic by construction);
* the **LLM judge**: the SFT model itself, asked in both orders; its agreement rate (both orders name
  the same answer) says how much its verdicts are worth.

The capability probe is scored for every model, and a few held-out prompts are kept with the SFT and
PPO answers side by side: HH-RLHF's harmless-base prompts ask for harmful help, so these show whether
PPO stopped complying.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chatglm_rlhf.pipeline.demo_align import unprefix

# Phrases that start a refusal or a redirect; a keyword heuristic for the report, not a judge.
_REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i can(?:'|no)?t (?:help|assist|provide|do that)|i cannot|i won'?t|"
    r"i'?m not able to|i am not able to|not (?:appropriate|ethical|legal)|illegal|harmful|"
    r"as an ai)\b",
    re.IGNORECASE,
)


def preference_accuracy(r_a: Sequence[float], r_b: Sequence[float], labels: Sequence[str]) -> dict[str, Any]:
    """Share of decided pairs (label a or b) where the higher score is the labelled winner; score ties
    count half (a constant scorer gets 0.5, not 0 or 1)."""
    hits, n = 0.0, 0
    for a, b, lab in zip(r_a, r_b, labels, strict=True):
        if lab == "tie":
            continue
        n += 1
        hits += 0.5 if a == b else float((a > b) == (lab == "a"))
    return {"n": n, "accuracy": hits / n if n else None}


def sign_agreement(d1: Sequence[float], d2: Sequence[float]) -> float | None:
    """Share of pairs whose two score differences have the same sign (a zero agrees only with a zero)."""
    pairs = list(zip(d1, d2, strict=True))
    if not pairs:
        return None
    same = sum((x > 0) == (y > 0) and (x < 0) == (y < 0) for x, y in pairs)
    return same / len(pairs)


def refusal_rate(responses: Sequence[str]) -> float | None:
    """Share of answers containing a refusal phrase (see ``_REFUSAL``)."""
    return sum(bool(_REFUSAL.search(r)) for r in responses) / len(responses) if responses else None


def _brief(summary: dict) -> dict:
    o = summary["overall"]
    out = {"win_rate": o["win_rate"], "ci": o["ci"], "win": o["win"], "tie": o["tie"], "loss": o["loss"],
           "n": o["n"]}  # fmt: skip
    if "mean_score" in summary:
        out["mean_score"] = summary["mean_score"]
    return out


class RealAlignStages:
    """Mixed into :class:`chatglm_rlhf.pipeline.real.RealRun` (cfg, out, data, models, helpers)."""

    # -- filter and reward models --------------------------------------------------------------------
    def stage_filter(self, _: Path) -> dict:
        from chatglm_rlhf.reward.demo_stages import run_filter_stage

        m = run_filter_stage(self.data / "rm_train.jsonl", self.out / "filter", self.cfg.filter)
        return unprefix(m, "filter.")

    def _rm(self, name: str, choice, train_cfg, train_path: Path) -> dict:
        from chatglm_rlhf.reward.demo_stages import run_rm_stage

        rcfg = dataclasses.replace(train_cfg, progress=self.cfg.progress)
        m = unprefix(
            run_rm_stage(
                self.backbone(choice), train_path, self.data / "rm_eval.jsonl", self.models / name, rcfg
            ),
            "rm.",
        )
        m["backbone"] = choice.backbone
        scorer = self.scorer(name)
        # heldout's pairs: never trained on by either RM (their contexts are the evaluation prompts).
        held = self.comparisons("heldout")
        r_a, r_b = scorer.score_comparisons(held)
        m["heldout"] = preference_accuracy(r_a, r_b, [c.label for c in held])
        return m

    def stage_rm(self, _: Path) -> dict:
        return self._rm("rm", self.cfg.rm, self.cfg.rm_train, self.out / "filter" / "filtered.jsonl")

    def stage_judge_rm(self, _: Path) -> dict:
        m = self._rm("judge_rm", self.cfg.judge_rm, self.cfg.judge_rm_train, self.data / "judge_train.jsonl")
        # How often the proxy and the judge order a held-out pair the same way: low agreement means
        # the judge is a genuinely different opinion, not a copy of the proxy.
        pairs = self.comparisons("rm_eval")
        diffs = []
        for name in ("rm", "judge_rm"):
            r_a, r_b = self.scorer(name).score_comparisons(pairs)
            diffs.append([a - b for a, b in zip(r_a, r_b)])
        m["agreement_with_proxy_rm_eval"] = sign_agreement(*diffs)
        return m

    # -- policy optimisation -------------------------------------------------------------------------
    def _ppo(self, name: str, **changes: Any) -> dict:
        from chatglm_rlhf.policy.ppo.stage import run_ppo_stage
        from chatglm_rlhf.policy.sft import load_sft_examples

        train = load_sft_examples(str(self.data / "sft.jsonl"))
        held = load_sft_examples(str(self.data / "sft_heldout.jsonl"))
        cfg = dataclasses.replace(
            self.cfg.ppo, reward_model=str(self.models / "rm"), progress=self.cfg.progress, **changes
        )
        result = run_ppo_stage(
            str(self.sft_path), str(self.models / name), self.samples("rl_prompts"), train, self.scorer("rm"),
            cfg, heldout_examples=held,
        )  # fmt: skip
        result["metrics_path"] = str(Path("models") / name / "metrics.jsonl")
        result["lora_r"] = cfg.lora_r
        return result

    def stage_ppo(self, _: Path) -> dict:
        return self._ppo("ppo")

    def stage_ppo_noptx(self, _: Path) -> dict:
        return self._ppo("ppo_noptx", ptx_coef=0.0)

    def stage_dpo(self, _: Path) -> dict:
        from chatglm_rlhf.policy.dpo.stage import run_dpo_stage

        prompts = self.samples("rl_prompts")
        if self.cfg.dpo_prompts:
            prompts = prompts[: self.cfg.dpo_prompts]
        cfg = dataclasses.replace(
            self.cfg.dpo, reward_model=str(self.models / "rm"), progress=self.cfg.progress
        )
        result = run_dpo_stage(self.sft_path, self.models / "dpo", prompts, self.scorer("rm"), cfg)
        return {k: v for k, v in result.items() if k != "model_dir"}

    # -- evaluation ----------------------------------------------------------------------------------
    def policies(self) -> list[str]:
        return ["ppo", *[f"ppo_no{a}" for a in self.cfg.ablations], "dpo"]

    def stage_evaluate(self, _: Path) -> dict:
        import gc

        from chatglm_rlhf.data.io import write_jsonl
        from chatglm_rlhf.evaluate.evaluate import generate_responses, judge_responses, length_stats
        from chatglm_rlhf.evaluate.judges import LLMJudge, RewardJudge

        ev, seed, progress = self.cfg.eval, self.cfg.data.seed, self.cfg.progress
        prompts = self.samples("eval_prompts")
        sft, tok = self.load(self.sft_path)

        def answers(model):
            return generate_responses(
                model, tok, prompts, ev.generation, ev.max_prompt_tokens, seed, progress
            )

        sft_resp, sft_fin = answers(sft)
        write_jsonl(self.out / "eval" / "sft_responses.jsonl",
                    [{"id": s.id, "prompt": s.prompt, "response": r} for s, r in zip(prompts, sft_resp)])  # fmt: skip
        rm_judges = {
            "judge_rm": RewardJudge(self.scorer("judge_rm"), ev.tie_threshold),
            "proxy_rm": RewardJudge(self.scorer("rm"), ev.tie_threshold),
        }
        out: dict[str, Any] = {
            "n_prompts": len(prompts),
            "sft": {"lengths": length_stats(sft_resp, sft_fin), "refusal_rate": refusal_rate(sft_resp)},
        }
        responses: dict[str, list[str]] = {}
        for name in self.policies():
            policy, _ = self.load(self.models / name)
            pol_resp, pol_fin = answers(policy)
            del policy
            gc.collect()
            responses[name] = pol_resp
            res: dict[str, Any] = {"refusal_rate": refusal_rate(pol_resp)}
            for jname, judge in rm_judges.items():
                r = judge_responses(prompts, pol_resp, sft_resp, judge, (pol_fin, sft_fin), seed=seed)
                r.save(self.out / "eval" / name / jname)
                res[jname] = _brief(r.summary)
                res["lengths"] = r.summary["lengths"]["policy"]
            res["eval"] = str(Path("eval") / name / "judge_rm" / "eval.json")  # the report's main table
            if ev.llm_judge and name in ev.llm_judge_policies:
                n = min(len(prompts), ev.llm_judge_prompts)
                llm = LLMJudge(sft, tok, max_prompt_tokens=ev.llm_judge_max_prompt_tokens, progress=progress)
                r = judge_responses(prompts[:n], pol_resp[:n], sft_resp[:n], llm, (pol_fin[:n], sft_fin[:n]),
                                    seed=seed)  # fmt: skip
                r.save(self.out / "eval" / name / "llm")
                res["llm"] = {**_brief(r.summary), **llm.describe()}
            out[name] = res
        out["examples"] = self._examples(prompts, sft_resp, responses.get("ppo", []), rm_judges["judge_rm"])
        return out

    def _examples(self, prompts, sft_resp, ppo_resp, judge) -> list[dict]:
        """The first ``eval.examples`` held-out prompts (a seeded sample, not picked by outcome), with
        both answers and the judge RM's scores: harmful compliance before and after PPO."""
        n = min(self.cfg.eval.examples, len(ppo_resp))
        if not n:
            return []
        judge.compare_many(prompts[:n], list(ppo_resp[:n]), list(sft_resp[:n]))
        s_ppo, s_sft = judge.last_scores
        return [
            {"id": p.id, "history_turns": len(p.history), "prompt": p.prompt, "sft": a, "ppo": b,
             "judge_rm_sft": x, "judge_rm_ppo": y}
            for p, a, b, x, y in zip(prompts[:n], sft_resp[:n], ppo_resp[:n], s_sft, s_ppo)
        ]  # fmt: skip

    def stage_probe(self, _: Path) -> dict:
        from chatglm_rlhf.evaluate.capability import run_probe
        from chatglm_rlhf.models.generation import GenerationSettings
        from chatglm_rlhf.utils.training import save_json

        settings = GenerationSettings(max_new_tokens=self.cfg.eval.probe_max_new_tokens, batch_size=20)
        out = {}
        for name in ["sft", *self.policies()]:
            model, tok = self.load(self.sft_path if name == "sft" else self.models / name)
            r = run_probe(model, tok, settings)
            save_json(self.out / "eval" / f"probe_{name}.json", r)
            out[name] = {
                "overall": r["overall"], "macro": r["macro"], "correct": r["correct"], "total": r["total"],
                "by_kind": {k: v["accuracy"] for k, v in r["by_kind"].items()},
                "items": str(Path("eval") / f"probe_{name}.json"),
            }  # fmt: skip
        return out


# -- metrics.json for the report --------------------------------------------------------------------


def finish_real(run_dir: Path, metrics: dict[str, Any], cfg=None) -> dict[str, Any]:
    """metrics.json gets the report's derived numbers; then report.html is written from it."""
    from chatglm_rlhf.evaluate.report_real import write_real_report
    from chatglm_rlhf.utils.training import save_json

    metrics = real_report_metrics(metrics, run_dir)
    if cfg is not None:
        metrics["run"] = {"name": "real: SmolLM2-135M-Instruct on HH-RLHF", "profile": cfg.profile}
    save_json(run_dir / "metrics.json", metrics)
    write_real_report(run_dir, metrics)
    return metrics


def real_report_metrics(m: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The layout :mod:`chatglm_rlhf.evaluate.report` reads (filter funnel, RM buckets, PPO curves,
    ppo.eval / dpo.eval = the judge RM's evaluation) plus ``headline`` and the ptx ablation rows."""
    from chatglm_rlhf.pipeline.demo_align import report_metrics

    base = {k: v for k, v in m.items() if k != "ablations"}
    out = report_metrics(base, run_dir)
    ev, probe = m.get("evaluate", {}), m.get("probe", {})
    rows = []
    for setting, name in (("on", "ppo"), ("off", "ppo_noptx")):
        if name in m:
            rows.append({"name": "ptx loss", "setting": setting,
                         "sft_heldout_loss": m[name].get("sft_heldout_loss"),
                         "judge_rm_win_rate": ev.get(name, {}).get("judge_rm", {}).get("win_rate"),
                         "probe_overall": probe.get(name, {}).get("overall")})  # fmt: skip
    for name in ("ppo", "dpo"):
        if name in ev:
            rows.append({"name": "PPO vs DPO", "setting": name,
                         "judge_rm_win_rate": ev[name].get("judge_rm", {}).get("win_rate"),
                         "proxy_rm_win_rate": ev[name].get("proxy_rm", {}).get("win_rate"),
                         "probe_overall": probe.get(name, {}).get("overall")})  # fmt: skip
    out["ablations"] = rows
    return out
