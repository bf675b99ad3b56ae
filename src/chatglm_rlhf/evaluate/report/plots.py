"""The report's figures: matplotlib (Agg backend, no display) rendered to PNG data URIs.

Each function takes plain Python data (already pulled out of metrics.json by
:mod:`chatglm_rlhf.evaluate.report`) and returns ``data:image/png;base64,...``. None of them computes a
number that is printed: titles and labels show only values passed in, so metrics.json holds every number
the report shows.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

WIN, TIE, LOSS = "#2f9e62", "#b8c0c8", "#d65a4f"
BEFORE, AFTER = "#e08a3c", "#3d7dd8"
INK, MUTED, GRID = "#1f2933", "#66737f", "#e6e9ec"
DPI = 110


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.titleweight": "bold",
            "axes.edgecolor": "#c5ccd3",
            "axes.labelcolor": INK,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.color": GRID,
            "grid.linewidth": 0.8,
            "axes.axisbelow": True,
            "xtick.color": MUTED,
            "ytick.color": MUTED,
            "legend.frameon": False,
        }
    )
    return plt


def to_data_uri(fig) -> str:
    """PNG bytes of ``fig`` as a data URI; the figure is closed."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _num(x) -> str:
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.3g}"


def funnel(read: int | None, dropped: dict[str, int], kept: int | None) -> str:
    """Waterfall: all comparisons read, each drop reason taking its share away, what is kept."""
    plt = _plt()
    rows: list[tuple[str, float, float, str]] = []  # label, left, width, colour
    remaining = read if read is not None else (kept or 0) + sum(dropped.values())
    rows.append((f"read  {_num(remaining)}", 0, remaining, "#5b6b7b"))
    for reason, n in sorted(dropped.items(), key=lambda kv: -kv[1]):
        remaining -= n
        rows.append((f"dropped: {reason}  {_num(n)}", remaining, n, LOSS))
    if kept is not None and kept != remaining:
        # The filter's counts do not add up: show the gap instead of hiding it.
        gap = remaining - kept
        rows.append((f"unaccounted  {_num(gap)}", min(kept, remaining), abs(gap), "#9b59b6"))
    if kept is not None:
        rows.append((f"kept  {_num(kept)}", 0, kept, WIN))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.0))
    y = list(range(len(rows)))[::-1]
    for yi, (_label, left, width, colour) in zip(y, rows):
        ax.barh(yi, width, left=left, color=colour, height=0.62)
    ax.set_yticks(y, [r[0] for r in rows])
    ax.tick_params(axis="y", length=0, labelcolor=INK)
    ax.set_xlabel("comparisons")
    ax.grid(axis="y", visible=False)
    ax.set_title("Data funnel: read → dropped by reason → kept", loc="left")
    return to_data_uri(fig)


def _bucket_labels(rows: Sequence[dict]) -> list[str]:
    return [str(r.get("bucket", i)) for i, r in enumerate(rows)]


def length_balance(before: Sequence[dict], after: Sequence[dict]) -> str:
    """Grouped bars: share of pairs whose longer answer is preferred, per length bucket."""
    plt = _plt()
    labels = list(dict.fromkeys(_bucket_labels(before) + _bucket_labels(after)))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.38 if before and after else 0.6
    series = [(s, c, n) for s, c, n in ((before, BEFORE, "before"), (after, AFTER, "after")) if s]
    for k, (rows, colour, name) in enumerate(series):
        by = dict(zip(_bucket_labels(rows), rows))
        offset = (k - (len(series) - 1) / 2) * width
        xs = [i + offset for i, b in enumerate(labels) if b in by]
        vals = [_f(by[b].get("longer_wins_rate")) for b in labels if b in by]
        bars = ax.bar(xs, vals, width=width * 0.95, color=colour, label=f"{name} balancing")
        for bar, b in zip(bars, [b for b in labels if b in by]):
            n = by[b].get("n")
            if n is not None:
                ax.annotate(f"n={_num(n)}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8, color=MUTED, xytext=(0, 2),
                            textcoords="offset points")  # fmt: skip
    ax.axhline(0.5, color=INK, linestyle="--", linewidth=1, label="no length preference")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("length bucket")
    ax.set_ylabel("longer answer preferred")
    ax.set_ylim(0, 1.08)
    ax.legend(loc="upper center", ncols=3, bbox_to_anchor=(0.5, -0.2))
    ax.set_title("Length preference per bucket, before and after balancing", loc="left")
    return to_data_uri(fig)


def _f(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def reward_model(per_bucket: Sequence[dict], scatter: Sequence[tuple[float, float]], corr) -> str:
    """Left: RM accuracy per length bucket. Right: reward vs response length."""
    plt = _plt()
    panels = [p for p, has in (("acc", per_bucket), ("scatter", scatter)) if has]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "acc":
            labels = _bucket_labels(per_bucket)
            vals = [_f(r.get("accuracy")) for r in per_bucket]
            bars = ax.bar(range(len(labels)), vals, color=AFTER, width=0.6)
            for bar, r in zip(bars, per_bucket):
                if r.get("n") is not None:
                    ax.annotate(f"n={_num(r['n'])}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=8, color=MUTED, xytext=(0, 2),
                                textcoords="offset points")  # fmt: skip
            ax.axhline(0.5, color=INK, linestyle="--", linewidth=1)
            ax.set_xticks(range(len(labels)), labels)
            ax.set_ylim(0, 1.08)
            ax.set_xlabel("length bucket")
            ax.set_ylabel("pairs ranked like the label")
            ax.set_title("RM accuracy per length bucket", loc="left")
        else:
            xs, ys = [p[0] for p in scatter], [p[1] for p in scatter]
            ax.scatter(xs, ys, s=18, alpha=0.7, color=BEFORE, edgecolors=INK, linewidths=0.3,
                       label=f"held-out answers (n = {len(xs)})")  # fmt: skip
            if len(set(xs)) > 1:  # the least-squares line: its slope is the length bias the RM learned
                mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
                slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
                lo, hi = min(xs), max(xs)
                ax.plot([lo, hi], [my + slope * (lo - mx), my + slope * (hi - mx)], color=INK, linewidth=1.5,
                        label=f"least-squares fit (slope {slope:.3f} per word)")  # fmt: skip
            ax.legend(loc="upper left", bbox_to_anchor=(0, -0.16), ncol=2, fontsize=8, frameon=False)
            title = "Reward vs response length"
            if corr is not None and not math.isnan(_f(corr)):
                title += f"  (r = {_f(corr):.3f})"
            ax.set_title(title, loc="left")
            ax.set_xlabel("response length (words)")
            ax.set_ylabel("reward")
    fig.tight_layout()
    return to_data_uri(fig)


PPO_PANELS = (
    ("reward", "reward", ("reward", "reward_mean", "rewards/mean")),
    ("reward_minus_baseline", "reward - reference baseline", ("reward_minus_baseline", "advantage_reward")),
    # k3 (exp(r) - r - 1 per token, r = log ref/policy) is never negative; the k1 sample mean can dip
    # below 0 on a batch even though the true KL cannot, so logs without k3 get a note.
    ("kl", "KL to the SFT model", ("kl_k3", "kl", "kl_mean", "objective/kl")),
    ("response_length", "response length (tokens)", ("response_length", "response_len", "length")),
)


def _series(rows: Sequence[dict], keys: Sequence[str]) -> tuple[list[float], list[float]]:
    for key in keys:
        pts = [(_f(r.get("step", i)), _f(r[key])) for i, r in enumerate(rows) if key in r]
        pts = [(x, y) for x, y in pts if not (math.isnan(x) or math.isnan(y))]
        if pts:
            return [p[0] for p in pts], [p[1] for p in pts]
    return [], []


def _ema(ys: Sequence[float], alpha: float) -> list[float]:
    out, acc = [], None
    for y in ys:
        acc = y if acc is None else alpha * y + (1 - alpha) * acc
        out.append(acc)
    return out


def kl_title(rows: Sequence[dict], ys: Sequence[float]) -> str:
    """The KL panel's title says which estimate it shows, and why a k1 curve may go below zero."""
    if any("kl_k3" in r for r in rows):
        return "KL to the SFT model (k3 estimate, >= 0)"
    if ys and min(ys) < 0:
        return "KL to the SFT model (k1: a sample mean, can dip below 0)"
    return "KL to the SFT model"


def ppo_curves(rows: Sequence[dict]) -> str:
    """2x2 panels: reward, baseline-subtracted reward, KL and response length per PPO step."""
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.2))
    for ax, (_key, title, keys) in zip(axes.flat, PPO_PANELS):
        xs, ys = _series(rows, keys)
        if _key == "kl" and xs:
            k3 = any("kl_k3" in r for r in rows)
            title += (
                " (k3 estimate, >= 0)"
                if k3
                else (" (k1: a sample mean, can dip below 0)" if min(ys) < 0 else "")
            )
        ax.set_title(title, loc="left")
        if not xs:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", color=MUTED, transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax.plot(xs, ys, color=AFTER, alpha=0.3 if len(xs) > 20 else 1.0, linewidth=1)
        if len(xs) > 20:  # smoothed line over the noisy per-step values
            ax.plot(xs, _ema(ys, 2 / (1 + max(5, len(xs) // 15))), color=AFTER, linewidth=2)
        ax.set_xlabel("PPO step")
    fig.tight_layout()
    return to_data_uri(fig)


def win_tie_loss(evals: Sequence[tuple[str, dict]]) -> str:
    """One panel per model: stacked win/tie/loss per category, win rate (ties half) with its CI."""
    plt = _plt()
    cats: list[str] = []
    for _, ev in evals:
        cats += [c for c in sorted(ev.get("per_category") or {}) if c not in cats]
    rows = ["overall", *cats]
    fig, axes = plt.subplots(
        1, len(evals), figsize=(5.2 * len(evals), 0.5 * len(rows) + 1.6), squeeze=False, sharey=True
    )
    for ax, (name, ev) in zip(axes[0], evals):
        groups = {"overall": ev.get("overall") or {}, **(ev.get("per_category") or {})}
        y = list(range(len(rows)))[::-1]
        for yi, row in zip(y, rows):
            _wtl_bar(ax, yi, groups.get(row) or {})
        ax.set_yticks(y, [f"{r}  (n={_num(int((groups.get(r) or {}).get('n', 0)))})" for r in rows])
        ax.tick_params(axis="y", length=0, labelcolor=INK)
        ax.axvline(0.5, color=INK, linestyle="--", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("share of prompts")
        ax.set_title(f"{name} vs SFT", loc="left")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in (WIN, TIE, LOSS)]
    handles.append(plt.Line2D([], [], color=INK, marker="D", linestyle="-", markersize=5))
    fig.legend(handles, ["win", "tie", "loss", "win rate (ties ½) with CI"], loc="lower center",
               ncols=4, bbox_to_anchor=(0.5, -0.02))  # fmt: skip
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return to_data_uri(fig)


def _wtl_bar(ax, y: float, s: dict) -> None:
    n = _f(s.get("n"))
    if not n or math.isnan(n):
        ax.text(0.01, y, "no data", va="center", color=MUTED, fontsize=8)
        return
    left = 0.0
    for key, colour in (("win", WIN), ("tie", TIE), ("loss", LOSS)):
        share = _f(s.get(key, 0)) / n
        ax.barh(y, share, left=left, color=colour, height=0.62)
        if share >= 0.07:
            ax.text(left + share / 2, y, f"{share:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if colour != TIE else INK)  # fmt: skip
        left += share
    wr, ci = _f(s.get("win_rate")), s.get("ci") or [None, None]
    lo, hi = _f(ci[0]), _f(ci[1])
    if not math.isnan(wr):
        xerr = None if math.isnan(lo) or math.isnan(hi) else [[wr - lo], [hi - wr]]
        ax.errorbar(wr, y + 0.36, xerr=xerr, fmt="D", color=INK, markersize=4, capsize=3, linewidth=1.2)


def overopt_curve(points: Sequence[dict], lines: Sequence[tuple[str, str]], kept_step: int | None) -> str:
    """Win rate vs SFT (dev prompts) at each PPO checkpoint, one line per judge (``lines``: (key, label));
    the kept checkpoint marked. Gao et al.'s picture: the proxy keeps rising, the judges flatten or fall."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    palette = [BEFORE, AFTER, WIN, LOSS, MUTED]
    for i, (key, label) in enumerate(lines):
        xs = [p["step"] for p in points if p.get(key) is not None]
        ys = [p[key] for p in points if p.get(key) is not None]
        if xs:
            style = "--" if "proxy" in key else "-"  # the proxy RM's line, of one policy or several
            ax.plot(xs, ys, style, marker="o", color=palette[i % len(palette)], label=label, linewidth=1.6)
    ax.axhline(0.5, color=INK, linestyle=":", linewidth=0.8)
    if kept_step is not None:
        ax.axvline(kept_step, color=MUTED, linewidth=1, label=f"kept: step {kept_step}")
    ax.set_ylim(0, 1)
    ax.set_xlabel("PPO step")
    ax.set_ylabel("win rate vs SFT (ties ½), dev prompts")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return to_data_uri(fig)
