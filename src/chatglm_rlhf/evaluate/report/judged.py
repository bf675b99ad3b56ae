"""Sections of runs judged without ground truth (real data, a user's files): the judge RM, the proxy
RM and the LLM judge; plus the capability probe, side-by-side answers and the time per stage. Each
returns "" when its metrics are missing, so a demo page leaves them out.

    evaluate.<policy>.judge_rm / .proxy_rm / .llm   {win_rate, ci, win, tie, loss, n[, agreement_rate]}
    evaluate.<policy>.judge_rm_2 ...                 the other judge RMs (evaluate.judge_names lists them)
    evaluate.<policy>.judges                         their majority verdict, pairwise_agreement, all_agree
    ppo_curve                                        {points: [{step, proxy_rm, judge_rm, ...}], kept_step}
    evaluate.<policy>.refusal_rate, evaluate.sft.refusal_rate
    evaluate.examples                               [{prompt, sft, ppo, judge_rm_sft, judge_rm_ppo}]
    probe.<model>                                   {overall, macro, by_kind: {kind: accuracy}}
    rm / judge_rm                                   eval_accuracy, heldout.accuracy, backbone, ...
    timing                                          {stage: seconds}
"""

from __future__ import annotations

from chatglm_rlhf.evaluate.report import plots
from chatglm_rlhf.evaluate.report.context import ReportContext
from chatglm_rlhf.evaluate.report.html import card, esc, fmt, img, kv_table, section, table

JUDGES = (("judge_rm", "judge RM (independent)"), ("proxy_rm", "proxy RM (trained against)"),
          ("llm", "LLM judge (SFT model, both orders)"))  # fmt: skip


def judge_names(c: ReportContext) -> list[str]:
    """The run's judge RMs (one before the ensemble: judge_rm)."""
    return list(c.get("evaluate.judge_names") or ["judge_rm"])


def judge_label(name: str) -> str:
    return "judge RM" if name == "judge_rm" else f"judge RM {name.rsplit('_', 1)[-1]}"


def all_judges(c: ReportContext) -> list[tuple[str, str]]:
    """(key, label) of every judge of the run's table: the judge RMs, their majority, proxy, LLM."""
    names = judge_names(c)
    rows = [(n, f"{judge_label(n)} (independent)") for n in names]
    if len(names) > 1:
        rows.append(("judges", f"majority of the {len(names)} judge RMs"))
    return [*rows, *JUDGES[1:]]


def policies(c: ReportContext) -> list[str]:
    ev = c.get("evaluate") or {}
    return [k for k in ev if isinstance(ev[k], dict) and "judge_rm" in ev[k]]


def headline(c: ReportContext) -> str:
    cards = []
    for name in [a for a in c.algorithms() if a in policies(c)] or policies(c)[:2]:
        j = c.get(f"evaluate.{name}.judge_rm") or {}
        ci = j.get("ci") or [None, None]
        cards.append(card(f"{name.upper()} vs SFT, judge RM", j.get("win_rate"),
                          f"ties ½ · CI {fmt(ci[0])} – {fmt(ci[1])} · n {fmt(j.get('n'))}"))  # fmt: skip
    llm = c.get("evaluate.ppo.llm") or {}
    if llm and not llm_silent(llm):
        cards.append(card("PPO vs SFT, LLM judge", llm.get("win_rate"),
                          f"agreement of its two orders {fmt(llm.get('agreement_rate'))}"))  # fmt: skip
    elif llm:  # every reply unreadable: its 0.500 is ties by default, not a verdict
        cards.append(card("PPO vs SFT, LLM judge", "no verdict",
                          f"all {fmt(llm.get('unparsed_replies'))} of its replies named neither answer"))  # fmt: skip
    cards.append(card("proxy RM accuracy", c.get("rm.eval_accuracy"), "held-out rm_eval pairs"))
    cards.append(card("judge RM accuracy", c.get("judge_rm.eval_accuracy"), "same pairs, own training data"))
    note = (
        '<p class="note">No gold judge: win rates are by a <b>judge RM, not gold</b> (trained on held-out '
        "preferences only, never optimised against), next to the proxy RM and an LLM judge.</p>"
    )
    return '<div class="cards">' + "".join(cards) + "</div>" + note


def llm_silent(llm: dict) -> bool:
    """The LLM judge answered nothing readable: every reply named neither answer (all ties by default)."""
    pairs, unparsed = llm.get("pairs") or 0, llm.get("unparsed_replies") or 0
    return bool(pairs) and unparsed >= 2 * pairs


def _interval(ci) -> str | None:
    return f"{ci[0]:.2f}-{ci[1]:.2f}" if ci else None


def reward_models(c: ReportContext) -> str:
    """The proxy and judge RMs side by side (a fragment of the reward-model section)."""
    rows = []
    names = [n for n in ("judge_rm", *judge_names(c)) if c.get(n) is not None]
    for name, label in (("rm", "proxy RM"), *((n, judge_label(n)) for n in dict.fromkeys(names))):
        if c.get(name) is None:
            continue
        rows.append([label, c.get(f"{name}.backbone"), c.get(f"{name}.train_pairs"), c.get(f"{name}.steps"),
                     c.get(f"{name}.eval_accuracy"), c.get(f"{name}.heldout.accuracy"),
                     _interval(c.get(f"{name}.heldout.ci95"))])  # fmt: skip
    if c.get("judge_rm") is None:
        return ""
    head = ["model", "backbone", "train pairs", "steps", "accuracy rm_eval", "accuracy heldout",
            "heldout 95% CI"]  # fmt: skip
    body = table(head, rows) + kv_table(
        [(f"proxy and {judge_label(n)} order rm_eval pairs alike", c.get(f"{n}.agreement_with_proxy_rm_eval"))
         for n in dict.fromkeys(names)]
    )  # fmt: skip
    note = "Accuracy = share of human-labelled pairs the RM ranks like the label (ties of score count ½). "
    note += "The judge RM never sees the proxy's data, nor is it optimised against. A judge whose held-out "
    note += "interval reaches 0.5 is not clearly better than a coin, and its win rates lean towards 0.5."
    return f'<h3>Reward models: the proxy and the judge</h3><p class="note">{esc(note)}</p>' + body


def judges(c: ReportContext) -> str:
    pols = policies(c)
    if not pols:
        return ""
    rows = []
    agreement = []
    for name in pols:
        for k, v in (c.get(f"evaluate.{name}.judges.pairwise_agreement") or {}).items():
            agreement.append(
                (f"{name.upper()}: {' and '.join(judge_label(x) for x in k.split('|'))} agree", v)
            )
        agreement.append((f"{name.upper()}: all judge RMs agree", c.get(f"evaluate.{name}.judges.all_agree")))
        for key, label in all_judges(c):
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
    if any(v is not None for _, v in agreement):
        body += "<h3>Do the judge RMs agree on the policies' pairs? (same verdict: win, tie or loss)</h3>"
        body += kv_table(agreement)
    unfinished = [(n.upper(), c.get(f"evaluate.{n}.lengths.unfinished_rate")) for n in ["sft", *pols]]
    body += "<h3>Answers cut off at the token limit (unfinished rate)</h3>" + kv_table(unfinished)
    body += "<h3>Answers with a refusal phrase (keyword heuristic)</h3>" + kv_table(refusals)
    intro = f"Held-out {prompts_words(c)}, greedy answers. A win by the proxy RM that the judge RM does not "
    intro += (
        "confirm is over-optimisation of the proxy. The LLM judge is the SFT model asked in both orders; "
    )
    intro += "disagreeing orders count as a tie, so its order agreement bounds how decisive it can be."
    return section("Win rate vs SFT by three judges", intro, body)


def overoptimisation(c: ReportContext) -> str:
    """The ppo_curve stage: proxy and judge win rates on the dev prompts at each PPO checkpoint."""
    curve = c.get("ppo_curve") or {}
    points = curve.get("points") or []
    if not points:
        return ""
    names = curve.get("judges") or ["judge_rm"]
    lines = [("proxy_rm", "proxy RM (trained against)"), *((n, judge_label(n)) for n in names)]
    if len(names) > 1:
        lines.append(("judges_mean", "judge RMs' mean"))
    body = img(plots.overopt_curve(points, lines, curve.get("kept_step")), "win rate along PPO")
    body += table(["step", *(label for _, label in lines), "unfinished"],
                  [[p.get("step"), *(p.get(k) for k, _ in lines), p.get("unfinished_rate")] for p in points])  # fmt: skip
    body += kv_table([("dev prompts", curve.get("dev_prompts")), ("kept checkpoint (step)", curve.get("kept_step")),
                      ("chosen by", curve.get("select_by"))])  # fmt: skip
    intro = (
        "PPO's snapshots vs SFT on the dev prompts (never the evaluation prompts). Over-optimisation (Gao "
        "et al. 2022) shows as the proxy RM's win rate rising while the judges' flattens or falls; the "
        "checkpoint every later stage evaluates is chosen here."
    )
    return section("Over-optimisation along PPO (dev prompts)", intro, body)


def probe(c: ReportContext) -> str:
    probe = c.get("probe") or {}
    if not probe:
        return ""
    kinds: list[str] = []
    for p in probe.values():
        kinds += [k for k in (p.get("by_kind") or {}) if k not in kinds]
    splits = any(p.get("by_split") for p in probe.values())
    evasive = any(p.get("refusal_hedge_rate") is not None for p in probe.values())
    head = ["model", "overall", "macro", *(["dev", "test"] if splits else []),
            *(["refusal / hedge (benign)"] if evasive else []), *kinds]  # fmt: skip
    rows = [[name.upper(), p.get("overall"), p.get("macro"),
             *([(p.get("by_split") or {}).get("dev"), (p.get("by_split") or {}).get("test")] if splits else []),
             *([p.get("refusal_hedge_rate")] if evasive else []),
             *[(p.get("by_kind") or {}).get(k) for k in kinds]]
            for name, p in probe.items()]  # fmt: skip
    total = next(iter(probe.values())).get("total") or "the"
    intro = (
        f"{total} items with checkable answers ({', '.join(kinds)}), greedy, before and after alignment: does "
        "RLHF make the model forget what it could do (the paper's reason for ptx), or win its judges by "
        "refusing and hedging? 'refusal / hedge': the share of benign requests answered with a refusal "
        "or a hedge (lower is better). 'dev' items may be used to choose settings; 'test' never."
    )
    return section("Capability probe", intro, table(head, rows))


def side_by_side(c: ReportContext) -> str:
    ex = c.get("evaluate.examples") or []
    if not ex:
        return ""
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
    intro = f"The first {prompts_words(c)} of the seeded held-out sample (not chosen by outcome), both models' answers."
    return section("Held-out prompts: SFT vs PPO", intro, "".join(blocks))


def prompts_words(c: ReportContext) -> str:
    """The task's prompts in the report's words (``run.prompts``; HH-RLHF for runs made before it)."""
    label = c.get("run.prompts")
    if label == "your":
        return "prompts of your preference file"
    return f"{label or 'HH-RLHF harmless-base'} prompts"


def timing(c: ReportContext) -> str:
    t = c.get("timing") or {}
    if not t:
        return ""
    total = sum(v for v in t.values() if isinstance(v, (int, float)))
    rows = [(k, f"{fmt(v)} s") for k, v in t.items()] + [("total", f"{fmt(total)} s ({total / 60:.1f} min)")]
    return section("Time per stage", "Wall seconds of each stage in this run folder.", kv_table(rows))
