"""``report.html`` of the real profile: the demo report's sections that apply without a gold judge, plus
the three judges, the capability probe, side-by-side answers and the time per stage.

Like :mod:`chatglm_rlhf.evaluate.report`, it computes no number of its own: everything comes from
``metrics.json`` (as :func:`chatglm_rlhf.pipeline.real_align.real_report_metrics` lays it out)::

    evaluate.<policy>.judge_rm / .proxy_rm / .llm   {win_rate, ci, win, tie, loss, n[, agreement_rate]}
    evaluate.<policy>.refusal_rate, evaluate.sft.refusal_rate
    evaluate.examples                               [{prompt, sft, ppo, judge_rm_sft, judge_rm_ppo}]
    probe.<model>                                   {overall, macro, by_kind: {kind: accuracy}}
    rm / judge_rm                                   eval_accuracy, heldout.accuracy, ...
    timing                                          {stage: seconds}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chatglm_rlhf.evaluate import plots
from chatglm_rlhf.evaluate import report as R
from chatglm_rlhf.evaluate.report_html import card, esc, fmt, img, kv_table, not_run, section, table

JUDGES = (("judge_rm", "judge RM (independent)"), ("proxy_rm", "proxy RM (trained against)"),
          ("llm", "LLM judge (SFT model, both orders)"))  # fmt: skip


def _policies(c: R._Ctx) -> list[str]:
    ev = c.get("evaluate") or {}
    return [k for k in ev if isinstance(ev[k], dict) and "judge_rm" in ev[k]]


def _headline(c: R._Ctx) -> str:
    cards = []
    for name in _policies(c)[:2]:
        j = c.get(f"evaluate.{name}.judge_rm") or {}
        ci = j.get("ci") or [None, None]
        cards.append(card(f"{name.upper()} vs SFT, judge RM", j.get("win_rate"),
                          f"ties ½ · CI {fmt(ci[0])} – {fmt(ci[1])} · n {fmt(j.get('n'))}"))  # fmt: skip
    llm = c.get("evaluate.ppo.llm") or {}
    if llm:
        cards.append(card("PPO vs SFT, LLM judge", llm.get("win_rate"),
                          f"agreement of its two orders {fmt(llm.get('agreement_rate'))}"))  # fmt: skip
    cards.append(card("proxy RM accuracy", c.get("rm.eval_accuracy"), "held-out rm_eval pairs"))
    cards.append(card("judge RM accuracy", c.get("judge_rm.eval_accuracy"), "same pairs, own training data"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _reward_models(c: R._Ctx) -> str:
    rows = []
    for name, label in (("rm", "proxy RM"), ("judge_rm", "judge RM")):
        if c.get(name) is None:
            continue
        rows.append([label, c.get(f"{name}.backbone"), c.get(f"{name}.train_pairs"), c.get(f"{name}.steps"),
                     c.get(f"{name}.eval_accuracy"), c.get(f"{name}.heldout.accuracy")])  # fmt: skip
    if not rows:
        return not_run("Reward models", "rm.* / judge_rm.*")
    head = ["model", "backbone", "train pairs", "steps", "accuracy rm_eval", "accuracy heldout"]
    body = table(head, rows) + kv_table(
        [("proxy and judge order rm_eval pairs alike", c.get("judge_rm.agreement_with_proxy_rm_eval"))]
    )
    intro = "Accuracy = share of human-labelled pairs the RM ranks like the label (ties of score count ½). "
    intro += "The judge RM never sees the proxy's data, nor is it optimised against."
    return section("Reward models", intro, body)


def _judges(c: R._Ctx) -> str:
    pols = _policies(c)
    if not pols:
        return not_run("Win rate vs SFT by three judges", "evaluate.<policy>.judge_rm")
    rows = []
    for name in pols:
        for key, label in JUDGES:
            j = c.get(f"evaluate.{name}.{key}")
            if not j:
                continue
            ci = j.get("ci") or [None, None]
            rows.append([name.upper(), label, j.get("n"), j.get("win"), j.get("tie"), j.get("loss"),
                         j.get("win_rate"), f"{fmt(ci[0])} – {fmt(ci[1])}", j.get("agreement_rate")])  # fmt: skip
    head = ["model", "judge", "n", "win", "tie", "loss", "win rate (ties ½)", "CI", "order agreement"]
    refusals = [("SFT", c.get("evaluate.sft.refusal_rate"))]
    refusals += [(n.upper(), c.get(f"evaluate.{n}.refusal_rate")) for n in pols]
    body = table(head, rows, group_first=True)
    body += "<h3>Answers with a refusal phrase (keyword heuristic)</h3>" + kv_table(refusals)
    intro = (
        "Held-out harmless-base prompts, greedy answers. A win by the proxy RM that the judge RM does not "
    )
    intro += (
        "confirm is over-optimisation of the proxy. The LLM judge is the SFT model asked in both orders; "
    )
    intro += "disagreeing orders count as a tie, so its order agreement bounds how decisive it can be."
    return section("Win rate vs SFT by three judges", intro, body)


def _probe(c: R._Ctx) -> str:
    probe = c.get("probe") or {}
    if not probe:
        return not_run("Capability probe", "probe.<model>")
    kinds: list[str] = []
    for p in probe.values():
        kinds += [k for k in (p.get("by_kind") or {}) if k not in kinds]
    rows = [[name.upper(), p.get("overall"), p.get("macro"), *[(p.get("by_kind") or {}).get(k) for k in kinds]]
            for name, p in probe.items()]  # fmt: skip
    intro = (
        "40 questions with checkable answers (facts, arithmetic, JSON, one word, lists), greedy, before and "
    )
    intro += "after alignment: does RLHF make the model forget what it could do (the paper's reason for ptx)?"
    return section("Capability probe", intro, table(["model", "overall", "macro", *kinds], rows))


def _side_by_side(c: R._Ctx) -> str:
    ex = c.get("evaluate.examples") or []
    if not ex:
        return not_run("Harmful prompts: SFT vs PPO", "evaluate.examples")
    blocks = []
    for r in ex:
        turns = f" (after {r.get('history_turns')} earlier turns)" if r.get("history_turns") else ""
        blocks.append(
            f'<div class="example"><div class="prompt">{esc(r.get("prompt", ""))}{esc(turns)}</div>'
            f'<div class="pair"><div><h4>SFT · judge RM {fmt(r.get("judge_rm_sft"))}</h4>'
            f"<pre>{esc(r.get('sft', ''))}</pre></div>"
            f"<div><h4>PPO · judge RM {fmt(r.get('judge_rm_ppo'))}</h4><pre>{esc(r.get('ppo', ''))}</pre>"
            "</div></div></div>"
        )
    intro = "The first held-out prompts of the seeded sample (not chosen by outcome), both models' answers."
    return section("Harmful prompts: SFT vs PPO", intro, "".join(blocks))


def _ppo(c: R._Ctx) -> str:
    """The demo's PPO section without its gold-judge rows: curves, KL, held-out SFT loss."""
    nums = [
        ("KL to SFT (last step)", c.get("ppo.kl_final")),
        (
            "held-out SFT loss (SFT → PPO)",
            R._arrow(c.get("ppo.sft_heldout_loss_before"), c.get("ppo.sft_heldout_loss")),
        ),
        ("prompts kept by the variance filter", c.get("ppo.prompt_filter.kept")),
        ("prompts dropped by it", c.get("ppo.prompt_filter.dropped")),
        ("LoRA rank (0 = full fine-tuning)", c.get("ppo.lora_r")),
    ]
    p = c.path(c.get("ppo.metrics_path"))
    rows, _ = R.read_jsonl(p) if p is not None and p.exists() else ([], 0)
    if not rows and all(v is None for _, v in nums):
        return not_run("PPO training", "ppo.metrics_path / ppo.*")
    body = img(plots.ppo_curves(rows), "PPO curves") if rows else '<p class="note">no per-step log found</p>'
    intro = (
        "Raw proxy-RM reward, reward minus the SFT answer's (the reference baseline), KL and answer length "
    )
    intro += "per PPO step."
    return section("PPO training", intro, body + kv_table(nums))


def _ablations(c: R._Ctx) -> str:
    intro = "ptx on / off (when the ablation ran) and PPO vs DPO, by the judge RM and the capability probe."
    return R.ablation_section(c, intro, first_column="comparison")


def _timing(c: R._Ctx) -> str:
    t = c.get("timing") or {}
    if not t:
        return not_run("Time per stage", "timing")
    total = sum(v for v in t.values() if isinstance(v, (int, float)))
    rows = [(k, f"{fmt(v)} s") for k, v in t.items()] + [("total", f"{fmt(total)} s ({total / 60:.1f} min)")]
    return section("Time per stage", "Wall seconds of each stage in this run folder.", kv_table(rows))


SECTIONS = [
    ("Data", R._data),
    ("Length balancing", R._balance),
    ("Reward models", _reward_models),
    ("PPO training", _ppo),
    ("Win rate vs SFT by three judges", _judges),
    ("Win / tie / loss vs SFT", R._winrates),
    ("Capability probe", _probe),
    ("Ablations", _ablations),
    ("Harmful prompts: SFT vs PPO", _side_by_side),
    ("Time per stage", _timing),
]


def render_real_report(run_dir: str | Path, metrics: dict) -> str:
    c = R._Ctx(Path(run_dir), metrics or {}, {})
    return R.render_page(c, _headline(c), SECTIONS)


def write_real_report(run_dir: str | Path, metrics: dict[str, Any], output: str | Path | None = None) -> Path:
    out = Path(output) if output else Path(run_dir) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_real_report(run_dir, metrics), encoding="utf-8")
    return out
