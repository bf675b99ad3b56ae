"""Screens: the error page's user bar, the saved notice, folded history, changed guidelines, header CSS."""

from __future__ import annotations

import re

from chatglm_rlhf.collect.annotate.render import STATIC_DIR


def test_403_page_keeps_the_user_bar(env, helpers):
    c = env.client("ann1")
    r = c.get("/admin")
    assert r.status_code == 403 and "this page is for admins" in r.text
    assert 'class="user"' in r.text and "Log out" in r.text and "ann1" in r.text
    # Its Log out form carries the session's CSRF token and works.
    token = helpers.form_fields(r.text)["csrf_token"]
    assert c.post("/logout", data={"csrf_token": token}).status_code == 303
    # Anonymous: an error page without a user bar.
    r = env.client().post("/logout", data={"csrf_token": "x"})
    assert r.status_code == 401 and "Log out" not in r.text


def test_item_page_after_submit_says_saved(env, helpers):
    c = env.client("ann1")
    page = helpers.start(c)
    assert "Saved" not in page
    r = c.post(helpers.form_action(page), data=helpers.answer(page))
    assert r.status_code == 303
    nxt = c.get(r.headers["location"])
    assert nxt.status_code == 200 and 'id="annotate-form"' in nxt.text
    assert (
        '<p class="notice" role="status">Saved: your answer to the previous item is stored.</p>' in nxt.text
    )
    assert "Saved" not in c.get("/annotate/demo").text  # said once: a reload does not repeat it
    r = c.post(helpers.form_action(nxt.text), data=helpers.answer(nxt.text, action="skip"))
    assert "Skipped: the previous item" in c.get(r.headers["location"]).text


def test_long_history_folds_older_turns(env, helpers):
    from chatglm_rlhf.collect.annotate import service

    roles = ["user", "assistant"]
    history = [{"role": roles[i % 2], "content": f"turn number {i + 1}"} for i in range(12)]
    row = {"id": "long", "prompt": "the 13th turn", "history": history, "responses": ["a", "b"]}
    path = helpers.write_candidates(env.tmp / "long.jsonl", [row])
    service.load_file(env.db, str(path), "long", overlap=1, pair_mode="all")
    page = helpers.start(env.client("ann1"), "long")
    folded = re.search(r'<details class="older">(.*?)</details>', page, re.S)
    assert folded, page
    assert "10 earlier turns" in folded.group(1)
    assert [int(n) for n in re.findall(r"turn number (\d+)", folded.group(1))] == list(range(1, 11))
    after = page[folded.end() :]
    assert [int(n) for n in re.findall(r"turn number (\d+)", after)] == [11, 12]
    assert after.index("turn number 12") < after.index("the 13th turn") < after.index("Response A")
    # A short history is not folded.
    assert "<details" not in helpers.start(env.client("ann2"))


def test_changed_guideline_sections_are_marked(env, helpers):
    from chatglm_rlhf.collect.annotate import service

    c = env.client("ann1")
    helpers.start(c)
    first = c.get("/annotate/demo/guidelines").text
    assert "changed-mark" not in first and "guidelines-changes" not in first
    with env.db.write() as s:
        project = service.get_project(s, "demo")
        text = project.guidelines_md.replace("## 3. Fluency\n", "## 3. Fluency\n\nNew: typos count.\n")
        text = text.replace("## Keyboard", "## New section\n\nBe kind.\n\n## Keyboard")
        assert text != project.guidelines_md
        service.set_guidelines(s, project, text)
    r = c.get("/annotate/demo")
    assert r.status_code == 303 and r.headers["location"].endswith("/guidelines")
    page = c.get("/annotate/demo/guidelines").text
    sections = re.findall(
        r'<section id="section-\d+" class="gl-section( changed)?">\s*(.*?)</section>', page, re.S
    )
    changed = [re.search(r"<h\d>(.*?)</h\d>", body).group(1) for mark, body in sections if mark]
    assert changed == ["3. Fluency", "New section"]
    assert all("Changed since you last confirmed" in body for mark, body in sections if mark)
    assert not any("changed-mark" in body for mark, body in sections if not mark)
    assert 'href="#section-' in page and "The guidelines changed since you last confirmed them" in page
    # Confirming clears the marks.
    c.post("/annotate/demo/guidelines", data={"csrf_token": helpers.form_fields(page)["csrf_token"]})
    assert "changed-mark" not in c.get("/annotate/demo/guidelines").text


def test_header_wraps_on_narrow_screens():
    css = (STATIC_DIR / "annotate.css").read_text(encoding="utf-8")
    rule = re.search(r"header\.top \{([^}]*)\}", css).group(1)
    assert "display: flex" in rule and "flex-wrap: wrap" in rule
    nav = re.search(r"nav\.progress, nav\.user \{([^}]*)\}", css).group(1)
    assert "flex-wrap: wrap" in nav
