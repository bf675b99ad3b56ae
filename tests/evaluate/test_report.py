"""report.html: renders from a synthetic metrics dict, embeds every plot, escapes text, survives gaps."""

from __future__ import annotations

import base64
import json
import re

import pytest

from chatglm_rlhf.evaluate.report.page import get, render_report, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG_RE = re.compile(r'<img class="plot" alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _eval(win, tie, loss, cats):
    n = win + tie + loss
    s = {"win": win, "tie": tie, "loss": loss, "n": n, "win_share": win / n, "tie_rate": tie / n,
         "loss_rate": loss / n, "win_rate": (win + tie / 2) / n, "ci": [0.4, 0.7], "confidence": 0.95}  # fmt: skip
    return {"judge": {"judge": "gold"}, "n": n, "overall": s, "per_category": {c: dict(s) for c in cats},
            "lengths": {"policy": {"n": n, "mean_chars": 40.5}, "baseline": {"n": n, "mean_chars": 30.25}},
            "responses_path": "eval/responses.jsonl"}  # fmt: skip


def synthetic_metrics(run_dir):
    (run_dir / "ppo").mkdir(parents=True)
    rows = [{"step": i, "reward": 0.1 * i, "reward_minus_baseline": 0.05 * i, "kl": 0.01 * i,
             "response_length": 20 + i} for i in range(1, 30)]  # fmt: skip
    (run_dir / "ppo" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    (run_dir / "eval").mkdir()
    resp = [{"id": "1", "category": "<script>alert(1)</script>", "prompt": "2+2?", "policy": "4 & more",
             "baseline": "5", "verdict": "a", "outcome": "win"}]  # fmt: skip
    (run_dir / "eval" / "responses.jsonl").write_text(json.dumps(resp[0]) + "\n")
    return {
        "run": {"name": "unit <run>"},
        "data": {"comparisons": 120},
        "filter": {"read": 120, "kept": 90, "dropped": {"tie": 20, "garbled": 10},
                   "balance": {"before": [{"bucket": "0-10", "n": 50, "longer_wins_rate": 0.7}],
                               "after": [{"bucket": "0-10", "n": 30, "longer_wins_rate": 0.5}]}},
        "rm": {"eval_accuracy": 0.7123, "gold_accuracy": 0.66, "length_correlation": 0.25,
               "per_bucket": [{"bucket": "0-10", "n": 20, "accuracy": 0.8}],
               "scatter": [[10, 0.1], [20, 0.5], [30, 0.4]]},
        "sft": {"gold_score": 0.5},
        "ppo": {"gold_win_rate_vs_sft": 0.6, "gold_score": 0.61, "kl": 0.3, "sft_heldout_loss": 2.1,
                "metrics_path": "ppo/metrics.jsonl", "eval": _eval(6, 2, 2, ["math", "<script>alert(1)</script>"])},
        "dpo": {"gold_win_rate_vs_sft": 0.55, "eval": _eval(5, 2, 3, ["math"])},
        "ceiling": {"n": 4, "sft_greedy_score": 0.464,
                    "rows": [{"n": 4, "gold_pick_win_rate": 0.6425, "rm_pick_win_rate": 0.5875,
                              "gold_pick_score": 0.645, "rm_pick_score": 0.548}],
                    "by_category": {"facts": {"n": 42, "sft_greedy_score": 0.443, "gold_pick_score": 0.514,
                                              "rm_pick_score": 0.369}}},
        "ablations": [
            {"name": "length balancing", "setting": "on", "rm_length_correlation": 0.25, "gold_win_rate": 0.6},
            {"name": "length balancing", "setting": "off", "rm_length_correlation": 0.5, "gold_win_rate": 0.52},
            {"name": "PPO vs DPO", "setting": "DPO", "gold_win_rate": 0.55, "mean_response_length": 44.0},
        ],
    }  # fmt: skip


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    metrics = synthetic_metrics(run_dir)
    path = write_report(run_dir, metrics, write_metrics=True)
    return run_dir, path.read_text(encoding="utf-8")


def test_report_exists_with_every_plot_embedded(rendered):
    run_dir, page = rendered
    assert (run_dir / "report.html").exists() and json.loads((run_dir / "metrics.json").read_text())["rm"]
    imgs = IMG_RE.findall(page)
    alts = [a for a, _ in imgs]
    assert alts == ["data funnel", "length preference per bucket", "reward model", "PPO curves",
                    "win tie loss per category"]  # fmt: skip
    for _, b64 in imgs:
        assert base64.b64decode(b64).startswith(PNG_MAGIC)
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "not run" not in page.replace("not run</div>", "")  # every section had data


def test_report_shows_metrics_and_escapes_text(rendered):
    _, page = rendered
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "unit &lt;run&gt;" in page and "4 &amp; more" in page
    assert "0.712" in page  # rm.eval_accuracy, 3 decimals
    assert "length balancing" in page and "rm length correlation" in page
    assert "1 lines of" in page  # the bad line of the PPO log is reported, not hidden
    ceiling = page.split("<h2>Best-of-n ceiling</h2>", 1)[1].split("<h2>", 1)[0]
    assert "0.642" in ceiling and "0.588" in ceiling and "0.369" in ceiling  # gold / RM pick, per category


def test_empty_metrics_say_not_run(tmp_path):
    page = write_report(tmp_path, {}).read_text()
    assert not IMG_RE.search(page)
    for title in ("Data", "Length balancing", "Reward model", "PPO training", "Ablations"):
        assert f"<h2>{title}</h2><span>not run" in page


def test_flat_dotted_keys_and_bad_sections(tmp_path):
    metrics = {"filter.read": 10, "filter.kept": 7, "filter.dropped": {"tie": 3}, "ablations": "oops",
               "ppo": {"eval": "missing/eval.json"}}  # fmt: skip
    page = render_report(tmp_path, metrics)
    assert len(IMG_RE.findall(page)) == 1  # the funnel
    assert "could not render: ablations must be a list" in page
    assert "Win / tie / loss vs SFT</h2><span>not run" in page


def test_eval_given_as_a_path(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "eval.json").write_text(json.dumps(_eval(3, 1, 1, ["math"])))
    page = render_report(tmp_path, {"ppo": {"eval": "e/eval.json"}})
    assert [a for a, _ in IMG_RE.findall(page)] == ["win tie loss per category"]
    assert "0.700" in page  # overall win rate (3 + 0.5) / 5


def test_get_nested_and_flat():
    m = {"a": {"b": {"c": 1}}, "x.y": 2, "p.q": {"r": 3}}
    assert get(m, "a.b.c") == 1 and get(m, "x.y") == 2 and get(m, "p.q.r") == 3
    assert get(m, "a.z", "d") == "d" and get(m, "nope") is None


def test_examples_found_through_the_eval_output_dir(tmp_path):
    eval_dir = tmp_path / "elsewhere"
    eval_dir.mkdir()
    row = {"id": "1", "category": "c", "prompt": "q?", "policy": "good", "baseline": "bad", "outcome": "win"}
    (eval_dir / "responses.jsonl").write_text(json.dumps(row) + "\n")
    ev = {**_eval(1, 0, 0, ["c"]), "responses_path": "responses.jsonl", "output_dir": str(eval_dir)}
    page = render_report(tmp_path / "run", {"ppo": {"eval": ev}})
    assert page.count('class="example"') == 1 and "PPO win" in page


def test_ppo_gold_arrow_compares_the_same_evaluation(tmp_path):
    # sft.gold_score is of sampled answers; the evaluation's own SFT score (greedy) is the fair start.
    metrics = {"sft": {"gold_score": 0.437}, "ppo": {"gold_score": 0.529, "sft_gold_score": 0.464}}
    page = render_report(tmp_path, metrics)
    assert "0.464 → 0.529" in page and "0.437 → 0.529" not in page
    assert "0.437 → 0.529" in render_report(
        tmp_path, {"sft": {"gold_score": 0.437}, "ppo": {"gold_score": 0.529}}
    )


def test_kl_panel_names_its_estimate():
    from chatglm_rlhf.evaluate.report.plots import kl_title

    assert kl_title([{"kl": -0.1, "kl_k3": 0.2}], [0.2]) == "KL to the SFT model (k3 estimate, >= 0)"
    assert "can dip below 0" in kl_title([{"kl": -0.1}], [-0.1, 0.3])
    assert kl_title([{"kl": 0.1}], [0.1]) == "KL to the SFT model"


def test_wide_tables_scroll_inside_their_card(rendered):
    _, page = rendered
    abl = page.split("<h2>Ablations</h2>", 1)[1].split("</section>", 1)[0]
    assert (
        '<div class="table-wrap"><table>' in abl
        and ".table-wrap { max-width: 100%; overflow-x: auto; }" in page
    )


def test_an_llm_judge_that_never_answered_gets_no_win_rate_card(tmp_path):
    judged = {"judge_rm": {"win_rate": 0.6, "n": 6, "ci": [0.4, 0.8]},
              "llm": {"win_rate": 0.5, "pairs": 3, "unparsed_replies": 6, "agreement_rate": 1.0}}  # fmt: skip
    metrics = {"evaluate": {"ppo": judged}, "run": {"algorithms": ["ppo"], "policies": ["ppo"]}}
    page = write_report(tmp_path, metrics).read_text()
    card = page.split("PPO vs SFT, LLM judge", 1)[1].split('<div class="card">', 1)[0]
    assert "no verdict" in card and "0.500" not in card and "all 6 of its replies named neither" in card
    judged["llm"]["unparsed_replies"] = 1  # it answered: its win rate is a verdict
    page = write_report(tmp_path, metrics).read_text()
    assert "0.500" in page.split("PPO vs SFT, LLM judge", 1)[1].split('<div class="card">', 1)[0]


def test_a_judge_no_better_than_a_coin_on_heldout_pairs_is_flagged_with_its_interval(tmp_path):
    judged = {"judge_rm": {"win_rate": 0.6, "n": 6, "ci": [0.4, 0.8]}}
    weak = {"train_pairs": 216, "heldout": {"n": 240, "accuracy": 0.5625, "ci95": [0.499, 0.624]}}
    strong = {"train_pairs": 216, "heldout": {"n": 240, "accuracy": 0.61, "ci95": [0.547, 0.669]}}
    metrics = {"evaluate": {"ppo": judged, "judge_names": ["judge_rm", "judge_rm_2"]},
               "run": {"algorithms": ["ppo"], "policies": ["ppo"]},
               "rm": {"eval_accuracy": 0.64, "heldout": {"n": 240, "accuracy": 0.625, "ci95": [0.562, 0.684]}},
               "judge_rm": weak, "judge_rm_2": strong}  # fmt: skip
    page = write_report(tmp_path, metrics).read_text()
    flags = page.split("Read first", 1)[1].split("</ul>", 1)[0]
    assert "judge_rm ranks 56% of 240 held-out human pairs" in flags
    assert "judge_rm_2" not in flags and "rm ranks 62%" not in flags
    assert "0.50-0.62" in page and "0.55-0.67" in page  # the reward-model table's interval column
