"""Health checks a person should see before trusting a win rate: collapse and a weak reward model.

Pure functions of the metrics the stages write; the evaluation stage prints them as warnings and the
report shows them at the top of the page (evaluate/report/sections.py).
"""

from __future__ import annotations

from typing import Any

GOLD_ACCURACY_MIN = 0.7  # below: the RM's ranking is close to a coin on the pairs gold decides
FILLER_PREFERRED_MAX = 0.6  # above: the RM prefers an answer padded with polite filler (length bias)
REFUSAL_PREFERRED_MAX = 0.2  # above: the RM prefers refusing benign requests (a refusal policy pays)


def top_shares(records: list[dict]) -> dict[str, dict[str, Any]]:
    """Per category, the share of prompts given the most common answer, by the policy and by SFT.

    With judge scores in the records (``policy_score``), also that answer and its mean score on the
    prompts it was given: a right answer repeated across alike prompts (one item for every "name a
    vegetable") reads differently from a wrong one given everywhere.
    """
    from collections import Counter

    out: dict[str, dict[str, Any]] = {}
    for cat in sorted({r.get("category") or "none" for r in records}):
        mine = [r for r in records if (r.get("category") or "none") == cat]
        top, n_top = Counter(r["policy"] for r in mine).most_common(1)[0]
        n_sft = Counter(r["baseline"] for r in mine).most_common(1)[0][1]
        row: dict[str, Any] = {"policy": n_top / len(mine), "sft": n_sft / len(mine)}
        scores = [r["policy_score"] for r in mine if r["policy"] == top and r.get("policy_score") is not None]
        if scores:
            row.update(top=top, top_score=sum(scores) / len(scores))
        out[cat] = row
    return out


def collapse_warnings(name: str, ev: dict) -> list[str]:
    """A policy that gives one answer to many prompts of a category (more than SFT did, + 5 points, and
    over 10%): it collapsed onto what its RM overrates. Refusals shared across harmful prompts are fine."""
    out = []
    for cat, s in (ev.get("top_response_share_by_category") or {}).items():
        if cat != "harmful" and s["policy"] > max(s["sft"] + 0.05, 0.10):
            what = f" ({s['top']!r}, mean score {s['top_score']:.2f} where given)" if "top" in s else ""
            out.append(f"{name} gives one answer to {s['policy']:.0%} of {cat} prompts{what} (SFT {s['sft']:.0%}): "
                       "collapse onto what its RM overrates; read its win rate with that in mind")  # fmt: skip
    if not out and ev.get("top_response_share", 0) > 0.5:
        out.append(
            f"{name} gives one answer to {ev['top_response_share']:.0%} of prompts ({ev.get('top_response')!r})"
        )
    return out


def weak_rm_warnings(name: str, rm: dict[str, Any]) -> list[str]:
    """The reward model's gold accuracy and its filler and refusal probes, against the limits above."""
    out = []
    acc = rm.get("gold_accuracy")
    if acc is not None and acc < GOLD_ACCURACY_MIN:
        out.append(
            f"{name} agrees with gold on {acc:.0%} of the pairs gold decides (under {GOLD_ACCURACY_MIN:.0%})"
        )
    filler = (rm.get("filler_probe") or {}).get("longer_wins")
    if filler is not None and filler > FILLER_PREFERRED_MAX:
        out.append(
            f"{name} prefers the filler-padded copy of a good answer {filler:.0%} of the time (a gold tie)"
        )
    refusal = (rm.get("refusal_probe") or {}).get("refusal_preferred")
    if refusal is not None and refusal > REFUSAL_PREFERRED_MAX:
        out.append(f"{name} scores a refusal above the good answer on {refusal:.0%} of benign prompts")
    return out
