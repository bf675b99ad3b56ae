"""The report's sections, in pipeline order, each a function of the :class:`ReportContext`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatglm_rlhf.evaluate.report import ablations, claims, gold_curve, judged, plots, rounds
from chatglm_rlhf.evaluate.report.context import ReportContext, read_jsonl, run_policies
from chatglm_rlhf.evaluate.report.html import card, esc, fmt, img, kv_table, not_run, section, table


def headline(c: ReportContext) -> str:
    """The cards at the top: win rates by the judge RM when the run had no gold judge, else by gold."""
    if judged.policies(c):
        return judged.headline(c)
    cards = []
    for stage in c.algorithms():
        ev, _ = c.eval_dict(stage)
        overall = (ev or {}).get("overall") or {}
        wr = overall.get("win_rate", c.policy(stage).get("gold_win_rate_vs_sft"))
        ci = overall.get("ci")
        sub = f"CI {fmt(ci[0])} – {fmt(ci[1])}" if isinstance(ci, list) and len(ci) == 2 else ""
        judge = ((ev or {}).get("judge") or {}).get("judge", "gold" if wr is not None else "")
        cards.append(card(f"{stage.upper()} vs SFT win rate", wr, f"ties count ½ · judge {judge} · {sub}"))
    cards.append(card("RM accuracy (held-out)", c.get("rm.eval_accuracy"), "pairs ranked like the label"))
    cards.append(card("comparisons kept", c.get("filter.kept"), f"of {fmt(c.get('filter.read'))} read"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def flags(c: ReportContext) -> str:
    """Warnings to read before any win rate: collapsed policies, policies that win by evasion, a weak
    reward model (evaluate/health.py)."""
    from chatglm_rlhf.evaluate.health import (
        collapse_warnings,
        evasiveness_warnings,
        repeated_notes,
        weak_judge_warnings,
        weak_rm_warnings,
    )

    lines = []
    if c.get("run.wiring_check"):
        lines.append(f"{c.get('run.profile')} is a wiring check: every stage ran on a handful of prompts with "
                     "tiny budgets, so its win rates, accuracies and warnings mean nothing about the methods")  # fmt: skip
    for name, ev in (c.get("evaluate") or {}).items():
        if isinstance(ev, dict) and "top_response_share_by_category" in ev:
            lines += collapse_warnings(name.upper(), ev)
            lines += [f"note: {x}" for x in repeated_notes(name.upper(), ev)]
    for name in run_policies(c.metrics):  # the reference baseline with too few answers for this data
        advice = c.get(f"{name}.baseline_noise.advice")
        if advice:
            lines.append(f"{name.upper()}: {advice}")
    if isinstance(c.get("probe"), dict):
        lines += evasiveness_warnings(c.get("probe"), c.get("evaluate") or {})
    for rm in ("rm", "rm_nobalance"):
        if isinstance(c.get(rm), dict):
            lines += weak_rm_warnings(
                "the RM" if rm == "rm" else "the RM without length balancing", c.get(rm)
            )
    judges = [n for n in c.metrics if n == "rm" or n.startswith("judge_rm")]
    for name in judges:  # no gold: the judges' own check on held-out human pairs
        if isinstance(c.get(name), dict) and c.get(f"{name}.gold_accuracy") is None:
            lines += weak_judge_warnings(name, c.get(name))
    if not lines:
        return ""
    items = "".join(f"<li>{esc(x)}</li>" for x in lines)
    return section(
        "Read first",
        "Checks on the run that change how its win rates read.",
        f'<ul class="flags">{items}</ul>',
    )


def _data(c: ReportContext) -> str:
    read, kept, dropped = c.get("filter.read"), c.get("filter.kept"), c.get("filter.dropped") or {}
    if read is None and kept is None and not dropped:
        return not_run("Data", "filter.read / filter.kept / filter.dropped")
    if not isinstance(dropped, dict):
        raise ValueError(f"filter.dropped must map reason -> count, got {type(dropped).__name__}")
    rows = [("comparisons collected", c.get("data.comparisons")), ("read by the filter", read)]
    rows += [(f"dropped: {k}", v) for k, v in sorted(dropped.items(), key=lambda kv: -kv[1])]
    rows.append(("kept", kept))
    body = img(plots.funnel(read, {str(k): int(v) for k, v in dropped.items()}, kept), "data funnel")
    return section("Data", "Every comparison the filter read, what it dropped and why, what it kept.",
                   body + kv_table(rows))  # fmt: skip


def _balance(c: ReportContext) -> str:
    before, after = c.get("filter.balance.before") or [], c.get("filter.balance.after") or []
    if not before and not after:
        return not_run("Length balancing", "filter.balance.before / .after")
    body = img(plots.length_balance(before, after), "length preference per bucket")
    head = ["bucket", "n before", "longer wins before", "n after", "longer wins after"]
    by_b = {str(r.get("bucket")): r for r in before}
    by_a = {str(r.get("bucket")): r for r in after}
    rows = [
        [b, (by_b.get(b) or {}).get("n"), (by_b.get(b) or {}).get("longer_wins_rate"),
         (by_a.get(b) or {}).get("n"), (by_a.get(b) or {}).get("longer_wins_rate")]
        for b in dict.fromkeys([*by_b, *by_a])
    ]  # fmt: skip
    intro = (
        "Annotators (and reward models) tend to prefer the longer answer. Balancing resamples each length "
        "bucket so the longer answer wins about half the time (the dashed line)."
    )
    return section("Length balancing", intro, body + table(head, rows))


def _scatter_points(c: ReportContext) -> list[tuple[float, float]]:
    raw = c.artifacts.get("rm_scatter") or c.get("rm.scatter")
    if isinstance(raw, (str, Path)):
        p = c.path(raw)
        raw = read_jsonl(p)[0] if p is not None and p.exists() else []
    pts = []
    for r in raw or []:
        if isinstance(r, dict):
            x, y = r.get("length"), r.get("reward")
        elif isinstance(r, (list, tuple)) and len(r) >= 2:
            x, y = r[0], r[1]
        else:
            continue
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            pts.append((float(x), float(y)))
    step = max(1, len(pts) // 5000)  # a readable scatter: at most ~5000 points, evenly thinned
    return pts[::step]


def _reward_model(c: ReportContext) -> str:
    nums = [
        ("held-out accuracy", c.get("rm.eval_accuracy")),
        ("accuracy vs the gold judge", c.get("rm.gold_accuracy")),
        ("accuracy on held-out pairs (never trained on)", c.get("rm.heldout.accuracy")),
        ("reward-length correlation", c.get("rm.length_correlation")),
    ]
    per_bucket, pts = c.get("rm.per_bucket") or [], _scatter_points(c)
    if all(v is None for _, v in nums) and not per_bucket and not pts:
        return not_run("Reward model", "rm.*")
    body = kv_table([(k, v) for k, v in nums if v is not None] or nums) + judged.reward_models(c)
    if per_bucket or pts:
        body = img(plots.reward_model(per_bucket, pts, c.get("rm.length_correlation")), "reward model") + body
    intro = "Accuracy by response length shows whether the RM only works on short answers; a strong "
    intro += "reward-length correlation is the length bias the paper's balancing fights."
    return section("Reward model", intro, body)


def _ppo(c: ReportContext) -> str:
    pol = c.policy("ppo")
    nums = [
        ("gold win rate vs SFT", pol.get("gold_win_rate_vs_sft")),
        # The SFT score of the same evaluation (greedy, the same prompts) when there is one: sft.gold_score
        # is of sampled answers, which would make the arrow compare two different decodings.
        (
            "mean gold score (SFT → PPO)",
            arrow(pol.get("sft_gold_score", c.get("sft.gold_score")), pol.get("gold_score")),
        ),
        ("KL to SFT", pol.get("kl")),
        ("KL to SFT (last step)", pol.get("kl_final")),
        (
            "held-out SFT loss (SFT → PPO)",
            arrow(pol.get("sft_heldout_loss_before"), pol.get("sft_heldout_loss")),
        ),
        ("mean answer length", pol.get("mean_response_length")),
        ("share of prompts given the most common answer", pol.get("top_response_share")),
        ("prompts kept by the variance filter", c.get("ppo.prompt_filter.kept")),
        ("prompts dropped by it", c.get("ppo.prompt_filter.dropped")),
        (
            "between-prompt share of the reward's variance (reference baseline)",
            c.get("ppo.baseline_noise.share_unbiased"),
        ),
        ("reference answers per prompt", c.get("ppo.baseline_noise.reference_answers")),
        ("LoRA rank (0 = full fine-tuning)", pol.get("lora_r")),
    ]
    p = c.path(c.artifacts.get("ppo_metrics") or c.get("ppo.metrics_path"))
    rows, bad = read_jsonl(p) if p is not None and p.exists() else ([], 0)
    shown = [(k, v) for k, v in nums if v is not None]
    if not rows and not shown:
        return not_run("PPO training", "ppo.metrics_path / ppo.*")
    rows = [curve_row(r) for r in rows]
    body = img(plots.ppo_curves(rows), "PPO curves") if rows else '<p class="note">no per-step log found</p>'
    if bad:
        body += f'<p class="note">{bad} lines of {esc(p)} were not JSON objects and are not plotted.</p>'
    intro = "Reward should rise while KL stays bounded; the reference baseline removes the prompt's own "
    intro += "difficulty from the reward. A rising length with flat gold score is reward hacking, and so is "
    intro += "one answer given to most prompts (the share below)."
    return section("PPO training", intro, body + kv_table(shown))


# PPO's log names -> the curve names the plot reads (logs of older runs already use the latter).
CURVE_NAMES = {"reward/raw": "reward", "reward/minus_baseline": "reward_minus_baseline", "kl": "kl",
               "response_len": "response_length"}  # fmt: skip


def curve_row(row: dict) -> dict:
    return {**row, **{new: row[old] for old, new in CURVE_NAMES.items() if old in row}}


def arrow(a: Any, b: Any) -> str | None:
    if a is None and b is None:
        return None
    return f"{fmt(a)} → {fmt(b)}"


def _winrates(c: ReportContext) -> str:
    evals = [(s.upper(), ev) for s in c.policies() if (ev := c.eval_dict(s)[0])]
    if not evals:
        return not_run("Win / tie / loss vs SFT", "evaluate.<policy>.eval")
    main = [(n, ev) for n, ev in evals if n.lower() in c.algorithms()] or evals  # the plot: the algorithms
    body = img(plots.win_tie_loss(main), "win tie loss per category")
    head = ["model", "category", "n", "win", "tie", "loss", "win rate (ties ½)", "CI", "judge"]
    rows = []
    for name, ev in evals:
        judge = (ev.get("judge") or {}).get("judge")
        groups = [("overall", ev.get("overall") or {})] + sorted((ev.get("per_category") or {}).items())
        for cat, s in groups:
            ci = s.get("ci") or [None, None]
            rows.append([name, cat, s.get("n"), s.get("win"), s.get("tie"), s.get("loss"),
                         s.get("win_rate"), f"{fmt(ci[0])} – {fmt(ci[1])}", judge])  # fmt: skip
    body += table(head, rows, group_first=True)
    body += _length_table(evals)
    intro = (
        "Each policy and SFT answer every held-out prompt; the judge compares each pair (the plot shows the "
    )
    intro += "run's algorithms, the table every policy, ablation twins included). The diamond is the "
    intro += "win rate with ties counted half, with its bootstrap confidence interval."
    return section("Win / tie / loss vs SFT", intro, body)


def _ceiling(c: ReportContext) -> str:
    rows = c.get("ceiling.rows")
    if not rows:
        return ""  # the ceiling needs a gold judge; runs without one have none
    head = ["n", "gold pick: win rate", "RM pick: win rate", "gold pick: score", "RM pick: score"]
    body = table(head, [[r.get("n"), r.get("gold_pick_win_rate"), r.get("rm_pick_win_rate"),
                         r.get("gold_pick_score"), r.get("rm_pick_score")] for r in rows])  # fmt: skip
    cats = c.get("ceiling.by_category") or {}
    if cats:
        head = ["category", "n", "SFT greedy", "gold pick", "RM pick"]
        body += f"<h3>Mean gold score per category (n = {esc(c.get('ceiling.n'))})</h3>"
        body += table(head, [[k, v.get("n"), v.get("sft_greedy_score"), v.get("gold_pick_score"),
                              v.get("rm_pick_score")] for k, v in cats.items()])  # fmt: skip
    body += kv_table([("SFT greedy gold score", c.get("ceiling.sft_greedy_score"))])
    intro = "n SFT samples per held-out prompt; one is picked by the gold judge or by the reward model and "
    intro += "compared with SFT's greedy answer (win rate, ties ½). The gold pick bounds what re-ranking "
    intro += "SFT's own answers can reach; the gap to the RM pick is what the RM's ranking loses."
    return section("Best-of-n ceiling", intro, body)


def _length_table(evals: list[tuple[str, dict]]) -> str:
    rows = []
    for name, ev in evals:
        for who, label in (("policy", name), ("baseline", "SFT")):
            s = (ev.get("lengths") or {}).get(who) or {}
            if s:
                rows.append([f"{label} (in {name} eval)", s.get("n"), s.get("mean_chars"),
                             s.get("median_chars"), s.get("p90_chars"), s.get("mean_words"),
                             s.get("unfinished_rate")])  # fmt: skip
    if not rows:
        return ""
    head = ["answers", "n", "mean chars", "median chars", "p90 chars", "mean words", "cut at limit"]
    return "<h3>Answer length</h3>" + table(head, rows)


def _examples(c: ReportContext, per_model: int = 3) -> str:
    blocks = []
    for stage in c.algorithms():
        ev, base = c.eval_dict(stage)
        p = _responses_file(c, stage, ev or {}, base)
        if p is None:
            continue
        rows = read_jsonl(p)[0]
        # Show what changed: wins first, then losses; ties say little.
        picks = [r for r in rows if r.get("outcome") == "win"][:per_model]
        picks += [r for r in rows if r.get("outcome") == "loss"][: max(1, per_model - 1)]
        for r in picks:
            blocks.append(_example_html(stage.upper(), r))
    if not blocks:
        return not_run("Example answers", "evaluate.<algorithm>.eval.responses_path")
    return section("Example answers", "A few prompts where the aligned model won or lost.", "".join(blocks))


def _responses_file(c: ReportContext, stage: str, ev: dict, base: Path | None) -> Path | None:
    """The eval's responses.jsonl: an artifact override, else ``responses_path`` relative to the run (or
    eval.json's folder), else relative to the eval's own ``output_dir``."""
    override = c.path(c.artifacts.get(f"{stage}_responses"))
    rel = ev.get("responses_path")
    candidates = [override, c.path(rel, base)]
    if ev.get("output_dir"):
        candidates.append(c.path(rel, Path(ev["output_dir"])))
    return next((p for p in candidates if p is not None and p.exists()), None)


def _example_html(name: str, r: dict) -> str:
    outcome = str(r.get("outcome", ""))
    return (
        f'<div class="example"><div class="ex-head"><span class="badge {esc(outcome)}">{name} {esc(outcome)}'
        f'</span> <span class="cat">{esc(r.get("category") or "")}</span></div>'
        f'<div class="prompt">{esc(r.get("prompt", ""))}</div><div class="pair">'
        f"<div><h4>SFT</h4><pre>{esc(r.get('baseline', ''))}</pre></div>"
        f"<div><h4>{name}</h4><pre>{esc(r.get('policy', ''))}</pre></div></div></div>"
    )


SECTIONS: list[tuple[str, Callable[[ReportContext], str]]] = [
    ("Read first", flags),
    ("The paper's claims", claims.section_),
    ("Data", _data),
    ("Length balancing", _balance),
    ("Reward model", _reward_model),
    ("PPO training", _ppo),
    ("Win rate vs SFT by three judges", judged.judges),
    ("Over-optimisation along PPO", judged.overoptimisation),
    ("Over-optimisation: proxy vs gold", gold_curve.section_),
    ("Win / tie / loss vs SFT", _winrates),
    ("Best-of-n ceiling", _ceiling),
    ("Capability probe", judged.probe),
    ("Ablations", ablations.section_),
    ("Feedback rounds", rounds.section_),
    ("Example answers", _examples),
    ("Held-out prompts: SFT vs PPO", judged.side_by_side),
    ("Time per stage", judged.timing),
]
