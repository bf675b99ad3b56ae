"""HTML pieces of the report: escaping, number formatting, tables, cards and the page's CSS.

All text that comes from data goes through :func:`esc`; numbers through :func:`fmt`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

CSS = """
:root { --ink:#1f2933; --muted:#66737f; --line:#e3e7eb; --bg:#f6f7f9; --win:#2f9e62; --loss:#d65a4f;
        --tie:#8a949e; --accent:#3d7dd8; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 28px 24px 60px; }
header h1 { margin: 0; font-size: 26px; }
header .sub { margin: 4px 0 22px; color: var(--muted); font-size: 13px; }
section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:18px 22px;
          margin:0 0 18px; }
section h2 { margin:0 0 4px; font-size:19px; }
section h3 { margin:18px 0 6px; font-size:15px; }
section .intro { margin:0 0 12px; color:var(--muted); font-size:13.5px; max-width: 80ch; }
section.missing { background: transparent; border-style: dashed; padding: 10px 22px; }
section.missing h2 { font-size: 15px; color: var(--muted); display:inline; }
section.missing span { color: var(--muted); font-size: 13px; margin-left: 8px; }
img.plot { display:block; max-width:100%; height:auto; margin: 6px 0 10px; }
.table-wrap { max-width: 100%; overflow-x: auto; }
ul.flags li { color: #9a3412; margin: 4px 0; }
table { border-collapse: collapse; font-size: 13.5px; margin: 6px 0; }
th.num { white-space: normal; min-width: 5.5em; }
th, td { padding: 4px 12px 4px 0; text-align: left; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; padding-right: 16px; }
th.num { text-align: right; padding-right: 16px; }
tr.group-start td { border-top: 2px solid var(--line); }
.cards { display:grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap:12px;
         margin: 0 0 18px; }
.card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:12px 16px; }
.card .label { color:var(--muted); font-size:12.5px; text-transform: uppercase; letter-spacing: .03em; }
.card .value { font-size:28px; font-weight:700; margin: 2px 0; font-variant-numeric: tabular-nums; }
.card .value.na { color: #b5bdc5; }
.card .foot { color:var(--muted); font-size:12px; }
.note { color: var(--muted); font-size: 13px; }
.error { color: var(--loss); font-weight: 600; }
.example { border-top:1px solid var(--line); padding: 10px 0; }
.example:first-of-type { border-top: none; }
.ex-head { margin-bottom: 4px; }
.badge { display:inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; color:#fff;
         background: var(--tie); }
.badge.win { background: var(--win); } .badge.loss { background: var(--loss); }
.cat { color: var(--muted); font-size: 12.5px; }
.prompt { font-weight: 600; margin: 4px 0; }
.pair { display:grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.pair h4 { margin: 0 0 2px; font-size: 12px; color: var(--muted); text-transform: uppercase; }
.pair pre { margin:0; white-space: pre-wrap; word-break: break-word; background: var(--bg);
            padding: 8px 10px; border-radius: 6px; font: 13px/1.45 ui-monospace, Menlo, Consolas, monospace; }
details summary { cursor: pointer; font-weight: 600; }
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(v: Any) -> str:
    """Numbers for people: ints with separators, floats with 3 significant digits (at least 3 decimals
    below 1), "–" for missing or NaN."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return "–"
        if v != 0 and abs(v) < 1:
            return f"{v:.3f}"
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def img(data_uri: str, alt: str) -> str:
    return f'<img class="plot" alt="{esc(alt)}" src="{data_uri}">'


def section(title: str, intro: str, body: str) -> str:
    intro_html = f'<p class="intro">{esc(intro)}</p>' if intro else ""
    return f"<section><h2>{esc(title)}</h2>{intro_html}{body}</section>"


def not_run(title: str, keys: str) -> str:
    return (
        f'<section class="missing"><h2>{esc(title)}</h2><span>not run (no {esc(keys)} in metrics.json)'
        "</span></section>"
    )


def card(label: str, value: Any, foot: str = "") -> str:
    cls = "value" if value is not None else "value na"
    return (
        f'<div class="card"><div class="label">{esc(label)}</div><div class="{cls}">{esc(fmt(value))}</div>'
        f'<div class="foot">{esc(foot) if value is not None else "not run"}</div></div>'
    )


def kv_table(rows: Sequence[tuple[str, Any]]) -> str:
    """Two columns, name and value; rows whose value is missing are left out."""
    body = "".join(
        f'<tr><th>{esc(k)}</th><td class="{"num" if _is_num(v) else ""}">{esc(fmt(v))}</td></tr>'
        for k, v in rows
        if v is not None
    )
    return f"<table>{body}</table>" if body else ""


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], group_first: bool = False) -> str:
    """A table; numeric cells right-aligned. ``group_first``: repeated first-column values are blanked
    and a rule marks where a new group starts (the ablation table)."""
    num_cols = {j for j in range(len(head)) if any(j < len(r) and _is_num(r[j]) for r in rows)}
    th = "".join(f'<th class="{"num" if j in num_cols else ""}">{esc(h)}</th>' for j, h in enumerate(head))
    out, prev = [], object()
    for r in rows:
        cells = list(r)
        cls = ""
        if group_first:
            if cells and cells[0] == prev:
                cells[0] = ""
            else:
                prev = cells[0] if cells else None
                cls = ' class="group-start"' if out else ""
        tds = "".join(
            f'<td class="{"num" if j in num_cols else ""}">{esc(fmt(v))}</td>' for j, v in enumerate(cells)
        )
        out.append(f"<tr{cls}>{tds}</tr>")
    # A wide table (the ablation table has a column per metric) scrolls inside its card, not past it.
    return f'<div class="table-wrap"><table><thead><tr>{th}</tr></thead><tbody>{"".join(out)}</tbody></table></div>'
