"""A real browser (Debian's chromium, headless, driven by Playwright) annotates 3 pairs by keyboard.

Skips with the reason when /usr/bin/chromium or the playwright package is missing; CI installs both
(scripts/ci_annotate_services.sh). Never runs ``playwright install``: the system browser is used.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # the server is on 127.0.0.1; never route it through a proxy
]
# Keys per item: six criterion scores (left then right) and the overall choice, then Enter.
KEYS = ["4535242", "3333333", "5121245"]


@contextmanager
def _served(db_path, candidates, helpers):
    """A server on a fresh database with ``candidates`` loaded as project demo (overlap 1, all pairs)
    and one annotator, ann1: (its url, the database)."""
    from chatglm_rlhf.collect.annotate import service
    from chatglm_rlhf.collect.annotate.db import Database, migrate
    from chatglm_rlhf.collect.annotate.process import start_server

    db = Database(str(db_path))
    migrate(db)
    service.load_file(db, str(candidates), "demo", overlap=1, pair_mode="all")
    with db.write() as s:
        service.create_user(s, "ann1", helpers.password)
    server = start_server(str(db_path))
    try:
        yield server.url, db
    finally:
        server.stop()
        db.dispose()


@pytest.fixture
def live_server(tmp_path, fast_hash, helpers):
    path = helpers.write_candidates(tmp_path / "c.jsonl", helpers.candidates(n=3, k=3))
    with _served(tmp_path / "browser.db", path, helpers) as served:
        yield served


def _browser(p):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium (scripts/ci_annotate_services.sh)")
    return p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)


def _logged_in(browser, url: str, password: str, on_dialog=None):
    """A page logged in as ann1 (the password typed, Enter pressed, as a person does)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    if on_dialog is not None:
        page.on("dialog", on_dialog)
    page.set_default_timeout(15_000)
    page.goto(url + "/")
    page.fill("input[name=username]", "ann1")
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    return page


def test_browser_keyboard_annotation(live_server, helpers, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (no browser download)"
    )
    from chatglm_rlhf.collect.annotate.models import Annotation, Assignment, User

    url, db = live_server
    dialogs: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = _browser(p)
        page = _logged_in(
            browser, url, helpers.password, on_dialog=lambda d: (dialogs.append(d.message), d.dismiss())
        )
        # The guidelines come first.
        assert page.url.endswith("/annotate/demo/guidelines")
        assert "Helpfulness" in page.inner_text("#guidelines") and "Harmlessness" in page.inner_text(
            "#guidelines"
        )
        with page.expect_navigation():
            page.click("#start")
        seen = []
        for n, keys in enumerate(KEYS):
            page.wait_for_selector("#annotate-form")
            action = page.get_attribute("#annotate-form", "action")
            seen.append(int(action.rsplit("/", 1)[1]))
            if n == 0:
                # The XSS payload of sample 0 shows as text and runs nothing.
                assert "<script>alert('x')</script>" in page.inner_text(".dialogue")
                page.screenshot(path=str(tmp_path / "annotator_page.png"), full_page=True)
                out = os.environ.get("ANNOTATE_SCREENSHOT_DIR")
                if out:
                    shutil.copy(tmp_path / "annotator_page.png", Path(out) / "annotator_page.png")
                # Guidelines are a keypress away, and coming back shows the same item.
                with page.expect_navigation():
                    page.keyboard.press("g")
                assert "Fluency" in page.inner_text("#guidelines")
                with page.expect_navigation():
                    page.click("#start")
                assert page.get_attribute("#annotate-form", "action") == action
            for key in keys:
                page.keyboard.press(key)
            assert page.locator("[data-field=overall] input:checked").get_attribute("value") == keys[-1]
            with page.expect_navigation():
                page.keyboard.press("Enter")
        assert "done 3" in page.inner_text("nav.progress")
        browser.close()
    assert dialogs == []
    with db.read() as s:
        uid = s.scalars(select(User.id).where(User.username == "ann1")).one()
        rows = list(s.scalars(select(Annotation).order_by(Annotation.id)))
        assert [a.assignment_id for a in rows] == seen and all(a.user_id == uid for a in rows)
        for ann, keys in zip(rows, KEYS):
            left, right = [int(k) for k in keys[:3]], [int(k) for k in keys[3:6]]
            a_scores, b_scores = (right, left) if ann.swapped else (left, right)
            assert list(ann.scores["a"].values()) == a_scores and list(ann.scores["b"].values()) == b_scores
            overall = int(keys[6])
            assert ann.choice == (6 - overall if ann.swapped else overall)
            assert s.get(Assignment, ann.assignment_id).status == "done"


@pytest.fixture
def round_server(tmp_path, fast_hash, helpers):
    """A project whose round-2 batch (2 samples, one chosen pair each, answers by ``ppo``) is open."""
    rows = [{"id": f"s{i}", "prompt": f"Prompt {i}", "responses": [f"Answer {i}.{j}" for j in range(3)],
             "meta": {"round": 2, "pairs": [[0, 2]], "models": ["ppo"] * 3}} for i in range(2)]  # fmt: skip
    path = helpers.write_candidates(tmp_path / "batch_r2.jsonl", rows)
    with _served(tmp_path / "rounds.db", path, helpers) as served:
        yield served


def test_browser_annotates_a_round_2_batch_and_sees_its_round(round_server, helpers):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (no browser download)"
    )
    from chatglm_rlhf.collect.annotate import export, service

    url, db = round_server
    with sync_api.sync_playwright() as p:
        browser = _browser(p)
        page = _logged_in(browser, url, helpers.password)
        with page.expect_navigation():
            page.click("#start")
        shown = []
        for keys in KEYS[:2]:
            page.wait_for_selector("#annotate-form")
            shown.append(page.inner_text("#round"))
            assert "Answer" in page.inner_text("#response-a") and ".1" not in page.inner_text(".responses")
            for key in keys:
                page.keyboard.press(key)
            with page.expect_navigation():
                page.keyboard.press("Enter")
        assert "You judged 2 pairs" in page.inner_text("main")  # the batch is done
        browser.close()
    assert shown == ["round 2", "round 2"]  # the page said the round of every pair it showed
    with db.read() as s:
        records = export.comparisons(s, service.get_project(s, "demo"), round_=2)
    assert len(records) == 2 and {c.meta["round"] for c in records} == {2}
    assert {(c.meta["model_a"], c.meta["model_b"], tuple(c.meta["pair"])) for c in records} == {
        ("ppo", "ppo", (0, 2))
    }
