"""``DIR/report.html``: one self-contained page (inline CSS, plots as embedded PNG) about an RLHF run.

:func:`write_report` reads a ``metrics`` dict (the run's ``metrics.json``) and a few files it points at,
and renders sections in pipeline order. A section whose data is missing says "not run" instead of
failing; a section whose data is malformed says what went wrong and the rest still renders. The report
computes no number of its own: every number on the page is in ``metrics.json`` (curves and scatter
points come from the files named below), except the funnel's "unaccounted" bar, drawn when the filter's
counts do not add up (read - dropped != kept) so the gap is visible rather than hidden.

metrics.json layout (every key optional; nested dicts, or flat dotted keys such as ``"filter.read"``)::

    run.name, run.recipe                  header text
    data.comparisons                      int, comparisons collected
    filter.read, filter.kept              int
    filter.dropped                        {reason: count}
    filter.balance.before / .after        [{bucket, n, longer_wins_rate}]  (share of pairs whose longer
                                          answer is preferred, per length bucket)
    rm.eval_accuracy, rm.gold_accuracy    float in [0, 1]
    rm.length_correlation                 float, Pearson r of reward and response length
    rm.per_bucket                         [{bucket, n, accuracy}]
    rm.scatter                            [[length, reward], ...] or [{length, reward}] or a path to a
                                          JSONL of {"length": .., "reward": ..} lines
    sft.gold_score                        float, mean gold score of the SFT model's eval answers
    ppo.sft_gold_score                    the SFT model's gold score in PPO's evaluation (preferred)
    ppo.gold_win_rate_vs_sft, ppo.gold_score, ppo.kl, ppo.sft_heldout_loss, ppo.mean_response_length,
    ppo.top_response_share                share of eval prompts given the most common answer (collapse)
    ppo.metrics_path                      per-step JSONL with step, reward, reward_minus_baseline, kl,
                                          response_length
    ppo.eval, dpo.eval                    eval.json of ``chatglm-rlhf evaluate`` (or a path to it):
                                          {judge, n, overall: {win, tie, loss, n, win_share, tie_rate,
                                          loss_rate, win_rate, ci: [lo, hi], confidence},
                                          per_category: {name: {...}}, lengths: {policy, baseline},
                                          mean_score, responses_path, output_dir}
    dpo.gold_win_rate_vs_sft, dpo.gold_score, dpo.mean_response_length
    ceiling.rows, ceiling.sft_greedy_score  best-of-n of SFT samples (evaluate/ceiling.py): [{n,
                                          gold_pick_win_rate, rm_pick_win_rate, gold_pick_score,
                                          rm_pick_score}]
    ablations                             [{name, setting, <metric>: value, ...}]; suggested metric
                                          names: rm_length_correlation, ppo_response_length,
                                          reward_std, sft_heldout_loss, gold_win_rate,
                                          mean_response_length

Relative paths resolve against the run directory (``responses_path`` inside an eval.json given as a
path resolves against that file's folder, then against the eval's ``output_dir``). ``artifacts`` may
override the files: ``ppo_metrics``, ``rm_scatter``, ``ppo_responses``, ``dpo_responses``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatglm_rlhf.evaluate import plots
from chatglm_rlhf.evaluate.report_html import (
    CSS,
    card,
    esc,
    fmt,
    img,
    kv_table,
    not_run,
    section,
    table,
)

log = logging.getLogger(__name__)


def get(metrics: dict, key: str, default: Any = None) -> Any:
    """``metrics["a"]["b"]`` for ``"a.b"``, falling back to a flat ``metrics["a.b"]`` (any mix of both)."""
    if key in metrics:
        return metrics[key]
    head, _, rest = key.partition(".")
    if rest and isinstance(metrics.get(head), dict):
        return get(metrics[head], rest, default)
    # a flat prefix: {"filter.balance": {"before": ...}}
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        if isinstance(metrics.get(prefix), dict):
            return get(metrics[prefix], ".".join(parts[i:]), default)
    return default


class _Ctx:
    """What the sections share: the metrics, the run folder, artifact overrides, load notes."""

    def __init__(self, run_dir: Path, metrics: dict, artifacts: dict):
        self.run_dir, self.metrics, self.artifacts = run_dir, metrics, artifacts

    def get(self, key: str, default: Any = None) -> Any:
        return get(self.metrics, key, default)

    def path(self, value: Any, base: Path | None = None) -> Path | None:
        if not isinstance(value, (str, Path)) or not str(value):
            return None
        p = Path(value)
        return p if p.is_absolute() else (base or self.run_dir) / p

    def eval_dict(self, stage: str) -> tuple[dict | None, Path | None]:
        """(eval summary, folder its relative paths resolve against) for ``ppo``/``dpo``."""
        ev = self.get(f"{stage}.eval")
        if isinstance(ev, dict):
            return ev, self.run_dir
        p = self.path(ev)
        if p is not None and p.exists():
            return json.loads(p.read_text(encoding="utf-8")), p.parent
        return None, None


def read_jsonl(path: Path) -> tuple[list[dict], int]:
    """Rows of a JSONL file and the number of lines that were not JSON objects."""
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(obj, dict):
            rows.append(obj)
        else:
            bad += 1
    return rows, bad


# --- sections ----------------------------------------------------------------------------------------


def _headline(c: _Ctx) -> str:
    cards = []
    for stage in ("ppo", "dpo"):
        ev, _ = c.eval_dict(stage)
        overall = (ev or {}).get("overall") or {}
        wr = overall.get("win_rate", c.get(f"{stage}.gold_win_rate_vs_sft"))
        ci = overall.get("ci")
        sub = f"CI {fmt(ci[0])} – {fmt(ci[1])}" if isinstance(ci, list) and len(ci) == 2 else ""
        judge = ((ev or {}).get("judge") or {}).get("judge", "gold" if wr is not None else "")
        cards.append(card(f"{stage.upper()} vs SFT win rate", wr, f"ties count ½ · judge {judge} · {sub}"))
    cards.append(card("RM accuracy (held-out)", c.get("rm.eval_accuracy"), "pairs ranked like the label"))
    cards.append(card("comparisons kept", c.get("filter.kept"), f"of {fmt(c.get('filter.read'))} read"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _data(c: _Ctx) -> str:
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


def _balance(c: _Ctx) -> str:
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


def _scatter_points(c: _Ctx) -> list[tuple[float, float]]:
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


def _reward_model(c: _Ctx) -> str:
    nums = [
        ("held-out accuracy", c.get("rm.eval_accuracy")),
        ("accuracy vs the gold judge", c.get("rm.gold_accuracy")),
        ("reward-length correlation", c.get("rm.length_correlation")),
    ]
    per_bucket, pts = c.get("rm.per_bucket") or [], _scatter_points(c)
    if all(v is None for _, v in nums) and not per_bucket and not pts:
        return not_run("Reward model", "rm.*")
    body = kv_table(nums)
    if per_bucket or pts:
        body = img(plots.reward_model(per_bucket, pts, c.get("rm.length_correlation")), "reward model") + body
    intro = "Accuracy by response length shows whether the RM only works on short answers; a strong "
    intro += "reward-length correlation is the length bias the paper's balancing fights."
    return section("Reward model", intro, body)


def _ppo(c: _Ctx) -> str:
    nums = [
        ("gold win rate vs SFT", c.get("ppo.gold_win_rate_vs_sft")),
        # The SFT score of the same evaluation (greedy, the same prompts) when there is one: sft.gold_score
        # is of sampled answers, which would make the arrow compare two different decodings.
        (
            "mean gold score (SFT → PPO)",
            _arrow(c.get("ppo.sft_gold_score", c.get("sft.gold_score")), c.get("ppo.gold_score")),
        ),
        ("KL to SFT", c.get("ppo.kl")),
        ("held-out SFT loss", c.get("ppo.sft_heldout_loss")),
        ("mean answer length", c.get("ppo.mean_response_length")),
        ("share of prompts given the most common answer", c.get("ppo.top_response_share")),
    ]
    p = c.path(c.artifacts.get("ppo_metrics") or c.get("ppo.metrics_path"))
    rows, bad = read_jsonl(p) if p is not None and p.exists() else ([], 0)
    if not rows and all(v is None for _, v in nums):
        return not_run("PPO training", "ppo.metrics_path / ppo.*")
    body = img(plots.ppo_curves(rows), "PPO curves") if rows else '<p class="note">no per-step log found</p>'
    if bad:
        body += f'<p class="note">{bad} lines of {esc(p)} were not JSON objects and are not plotted.</p>'
    intro = "Reward should rise while KL stays bounded; the reference baseline removes the prompt's own "
    intro += "difficulty from the reward. A rising length with flat gold score is reward hacking, and so is "
    intro += "one answer given to most prompts (the share below)."
    return section("PPO training", intro, body + kv_table(nums))


def _arrow(a: Any, b: Any) -> str | None:
    if a is None and b is None:
        return None
    return f"{fmt(a)} → {fmt(b)}"


def _winrates(c: _Ctx) -> str:
    evals = [(s.upper(), ev) for s in ("ppo", "dpo") if (ev := c.eval_dict(s)[0])]
    if not evals:
        return not_run("Win / tie / loss vs SFT", "ppo.eval / dpo.eval")
    body = img(plots.win_tie_loss(evals), "win tie loss per category")
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
    intro = "Both models answer every held-out prompt; the judge compares each pair. The diamond is the "
    intro += "win rate with ties counted half, with its bootstrap confidence interval."
    return section("Win / tie / loss vs SFT", intro, body)


def _ceiling(c: _Ctx) -> str:
    rows = c.get("ceiling.rows")
    if not rows:
        return not_run("Best-of-n ceiling", "ceiling.rows")
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


def ablation_section(c: _Ctx, intro: str, first_column: str = "ablation") -> str:
    """The ablation rows ``[{name, setting, <metric>: value}]`` as one table, a column per metric."""
    rows = c.get("ablations")
    if not rows:
        return not_run("Ablations", "ablations")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("ablations must be a list of {name, setting, <metric>: value} rows")
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in ("name", "setting") and k not in cols]
    head = [first_column, "setting", *[k.replace("_", " ") for k in cols]]
    body_rows = [[r.get("name"), r.get("setting"), *[r.get(k) for k in cols]] for r in rows]
    return section("Ablations", intro, table(head, body_rows, group_first=True))


def _ablations(c: _Ctx) -> str:
    return ablation_section(
        c, "The paper's ablations on the demo world: each row changes one setting of the recipe."
    )


def _examples(c: _Ctx, per_model: int = 3) -> str:
    blocks = []
    for stage in ("ppo", "dpo"):
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
        return not_run("Example answers", "ppo.eval.responses_path / dpo.eval.responses_path")
    return section("Example answers", "A few prompts where the aligned model won or lost.", "".join(blocks))


def _responses_file(c: _Ctx, stage: str, ev: dict, base: Path | None) -> Path | None:
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


def _all_numbers(c: _Ctx) -> str:
    rows = [(k, v) for k, v in _flatten(c.metrics) if not isinstance(v, (list, dict))]
    return (
        "<section><details><summary>All numbers in metrics.json</summary>"
        + kv_table(rows)
        + "</details></section>"
    )


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        out = []
        for k, v in d.items():
            out += _flatten(v, f"{prefix}{k}.")
        return out
    if isinstance(d, list) and len(d) > 12:
        return [(prefix[:-1], f"list of {len(d)} rows")]
    if isinstance(d, list) and all(isinstance(x, dict) for x in d):
        out = []
        for i, x in enumerate(d):
            out += _flatten(x, f"{prefix}{i}.")
        return out
    return [(prefix[:-1], d)]


SECTIONS: list[tuple[str, Callable[[_Ctx], str]]] = [
    ("Data", _data),
    ("Length balancing", _balance),
    ("Reward model", _reward_model),
    ("PPO training", _ppo),
    ("Win / tie / loss vs SFT", _winrates),
    ("Best-of-n ceiling", _ceiling),
    ("Ablations", _ablations),
    ("Example answers", _examples),
]


def render_report(run_dir: str | Path, metrics: dict, artifacts: dict | None = None) -> str:
    """The report's HTML as a string."""
    c = _Ctx(Path(run_dir), metrics or {}, dict(artifacts or {}))
    return render_page(c, _headline(c), SECTIONS)


def render_page(c: _Ctx, headline: str, sections: list[tuple[str, Callable[[_Ctx], str]]]) -> str:
    """A whole page: the headline, each section (one that fails says so), every number, the frame."""
    parts = [headline]
    for title, fn in sections:
        try:
            parts.append(fn(c))
        except Exception as e:  # one malformed entry must not cost the whole report
            log.warning("report section %s failed: %s", title, e)
            parts.append(section(title, "", f'<p class="error">could not render: {esc(e)}</p>'))
    parts.append(_all_numbers(c))
    run_dir = c.run_dir
    name = get(c.metrics, "run.name") or Path(run_dir).resolve().name
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>RLHF report: {esc(name)}</title><style>{CSS}</style></head><body><main>"
        f'<header><h1>RLHF run report</h1><p class="sub">{esc(name)} · {esc(str(Path(run_dir)))} · '
        f"generated {when}</p></header>" + "".join(parts) + "</main></body></html>"
    )


def write_report(
    run_dir: str | Path,
    metrics: dict,
    artifacts: dict | None = None,
    output: str | Path | None = None,
    write_metrics: bool = False,
) -> Path:
    """Render ``run_dir/report.html`` (or ``output``); with ``write_metrics`` also ``run_dir/metrics.json``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = Path(output) if output else run_dir / "report.html"
    if write_metrics:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default))
    out.write_text(render_report(run_dir, metrics, artifacts), encoding="utf-8")
    return out


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return str(v)


__all__ = ["get", "render_report", "write_report"]
