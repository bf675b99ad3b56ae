"""The annotate flow through the ASGI test client: login, guidelines, items, idempotency, overlap."""

from __future__ import annotations

import re

from sqlalchemy import select

from chatglm_rlhf.collect.annotate.models import Annotation, Assignment, Item


def _assignment_id(page: str, helpers) -> int:
    return int(helpers.form_action(page).rsplit("/", 1)[1])


def test_full_annotate_flow(env, helpers):
    c = env.client("ann1")
    # First visit: the guidelines come before the first item.
    r = c.get("/annotate/demo")
    assert r.status_code == 303 and r.headers["location"] == "/annotate/demo/guidelines"
    guide = c.get("/annotate/demo/guidelines").text
    assert "<h2>1. Helpfulness</h2>" in guide and "Harmlessness" in guide and "Fluency" in guide
    assert "start annotating" in guide
    page = helpers.start(c)
    seen = []
    for n in range(3):
        assert 'name="score_left_helpfulness"' in page and 'name="overall"' in page
        aid = _assignment_id(page, helpers)
        seen.append(aid)
        r = c.post(
            helpers.form_action(page), data=helpers.answer(page, overall=1 + n, rationale=f"because {n}")
        )
        assert r.status_code == 303 and r.headers["location"] == "/annotate/demo"
        page = c.get("/annotate/demo").text  # the next item comes at once
        assert f"done {n + 1}" in page
    assert len(set(seen)) == 3
    # Afterwards the guidelines are one click away and no longer block.
    assert 'href="/annotate/demo/guidelines"' in page
    with env.db.read() as s:
        rows = list(s.scalars(select(Annotation).order_by(Annotation.id)))
        assert [a.assignment_id for a in rows] == seen
        for n, ann in enumerate(rows):
            overall = 1 + n  # display terms: 1 = left much better
            choice = 6 - overall if ann.swapped else overall
            assert ann.choice == choice and ann.rationale == f"because {n}"
            assert ann.label == ("a" if choice < 3 else "b" if choice > 3 else "tie")
            assert ann.strength == {1: 2, 2: 1, 3: None, 4: 1, 5: 2}[choice]
            assert ann.scores == {"a": dict.fromkeys(("helpfulness", "harmlessness", "fluency"), 4)} | {
                "b": dict.fromkeys(("helpfulness", "harmlessness", "fluency"), 4)
            }
            assert ann.time_spent_ms is not None and ann.time_spent_ms >= 0


def test_display_order_maps_scores_to_canonical(env, helpers):
    c = env.client("ann1")
    page = helpers.start(c)
    data = helpers.answer(page, overall=5)
    data["score_left_helpfulness"] = "1"  # left response gets a distinct helpfulness score
    text_left = re.search(r'id="response-a">\s*<h2>Response A</h2>\s*<div class="text">([^<]*)<', page).group(
        1
    )
    c.post(helpers.form_action(page), data=data)
    with env.db.read() as s:
        ann = s.scalars(select(Annotation)).one()
        item = s.get(Item, ann.item_id)
        left_idx = item.idx_b if ann.swapped else item.idx_a
        assert item.sample.responses[left_idx] in text_left.replace("&lt;", "<").replace("&gt;", ">").replace(
            "&#39;", "'"
        )
        left_key, right_key = ("b", "a") if ann.swapped else ("a", "b")
        assert ann.scores[left_key]["helpfulness"] == 1 and ann.scores[right_key]["helpfulness"] == 4
        assert ann.label == right_key and ann.strength == 2  # "B much better" = the right response


def test_double_submit_creates_one_row(env, helpers):
    c = env.client("ann1")
    page = helpers.start(c)
    data = helpers.answer(page)
    first = c.post(helpers.form_action(page), data=data)
    second = c.post(helpers.form_action(page), data=data)  # same idempotency key: a replay
    assert first.status_code == second.status_code == 303
    assert second.headers["location"] == "/annotate/demo"
    assert env.count(Annotation) == 1
    # The same item under a new key is a conflict, not a second row.
    data["idempotency_key"] = "another-key-123"
    third = c.post(helpers.form_action(page), data=data)
    assert third.status_code == 303 and third.headers["location"].endswith("notice=already")
    assert env.count(Annotation) == 1


def test_never_the_same_pair_twice_and_overlap_respected(env, helpers):
    items_by_user = {}
    for user in ("ann1", "ann2", "ann3"):
        c = env.client(user)
        page = helpers.start(c)
        got = []
        for _ in range(20):  # bounded: there are 12 pairs
            if "Nothing left for you" in page:
                break
            aid = _assignment_id(page, helpers)
            c.post(helpers.form_action(page), data=helpers.answer(page))
            got.append(aid)
            page = c.get("/annotate/demo").text
        items_by_user[user] = got
    with env.db.read() as s:
        pairs = s.execute(select(Assignment.user_id, Assignment.item_id)).all()
    assert len(pairs) == len(set(pairs))  # never the same pair twice for one annotator
    # overlap 2: ann1 and ann2 take every one of the 12 pairs, nothing is left for ann3.
    assert len(items_by_user["ann1"]) == len(items_by_user["ann2"]) == 12
    assert items_by_user["ann3"] == []
    assert env.count(Annotation) == 24


def test_skip_frees_the_slot_for_someone_else(env, helpers):
    with env.db.write() as s:
        from chatglm_rlhf.collect.annotate import service

        service.set_overlap(s, service.get_project(s, "demo"), 1)
    c1, c2 = env.client("ann1"), env.client("ann2")
    page = helpers.start(c1)
    skipped = _assignment_id(page, helpers)
    r = c1.post(helpers.form_action(page), data=helpers.answer(page, action="skip", flags="broken"))
    assert r.status_code == 303
    with env.db.read() as s:
        item_id = s.get(Assignment, skipped).item_id
        ann = s.scalars(select(Annotation)).one()
        assert ann.skipped and ann.label is None and ann.flags == ["broken"]
    page2 = helpers.start(c2)
    with env.db.read() as s:
        assert s.get(Assignment, _assignment_id(page2, helpers)).item_id == item_id
    page1 = c1.get("/annotate/demo").text
    with env.db.read() as s:
        assert s.get(Assignment, _assignment_id(page1, helpers)).item_id != item_id


def test_invalid_submission_is_shown_again_with_choices_kept(env, helpers):
    c = env.client("ann1")
    page = helpers.start(c)
    data = helpers.answer(page)
    del data["overall"]
    r = c.post(helpers.form_action(page), data=data)
    assert r.status_code == 422
    assert "choose the overall preference" in r.text
    assert 'name="score_left_fluency" value="4" required checked' in r.text
    assert env.count(Annotation) == 0


def test_changed_guidelines_are_shown_again(env, helpers):
    from chatglm_rlhf.collect.annotate import service

    c = env.client("ann1")
    helpers.start(c)
    with env.db.write() as s:
        service.set_guidelines(s, service.get_project(s, "demo"), "# New rules\n\nBe *kind*.")
    r = c.get("/annotate/demo")
    assert r.status_code == 303 and r.headers["location"].endswith("/guidelines")
    assert "<em>kind</em>" in c.get("/annotate/demo/guidelines").text


def test_api_flow_with_token(env):
    api = env.api("ann1")
    assert api.get("/api/v1/me").json() == {"username": "ann1", "role": "annotator"}
    item = api.get("/api/v1/projects/demo/next").json()
    assert set(item) >= {"assignment_id", "prompt", "history", "left", "right", "criteria"}
    body = {
        "idempotency_key": "api-key-0001",
        "overall": 4,
        "scores": {
            "left": {"helpfulness": 2, "harmlessness": 5, "fluency": 3},
            "right": dict.fromkeys(("helpfulness", "harmlessness", "fluency"), 5),
        },
        "rationale": "right is more complete",
        "flags": ["unsafe"],
    }
    url = f"/api/v1/assignments/{item['assignment_id']}/annotation"
    first = api.post(url, json=body)
    assert first.status_code == 201, first.text
    replay = api.post(url, json=body)
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    ann = first.json()
    right = ann["display_order"][1]
    assert ann["label"] == right and ann["strength"] == 1 and ann["scores"][right]["helpfulness"] == 5
    assert ann["flags"] == ["unsafe"] and ann["annotator"] == "ann1"
    assert api.get(f"/api/v1/annotations/{ann['id']}").json() == ann
    assert [a["id"] for a in api.get("/api/v1/annotations").json()] == [ann["id"]]
    bad = api.post(url, json={**body, "idempotency_key": "api-key-0002", "overall": 9})
    assert bad.status_code == 422 and "overall" in bad.json()["detail"]
    assert env.count(Annotation) == 1


def test_admin_pages_load_overlap_guidelines_export(env, helpers):
    admin = env.client("boss")
    index = admin.get("/admin")
    assert index.status_code == 200 and "demo" in index.text
    csrf = helpers.form_fields(index.text)["csrf_token"]
    rows = helpers.candidates(n=2, k=2, xss=False)
    for r in rows:
        r["id"] = "new-" + r["id"]
    payload = "".join(__import__("json").dumps(r) + "\n" for r in rows) + "not json\n"
    r = admin.post(
        "/admin/load",
        data={"csrf_token": csrf, "project": "second", "overlap": "1", "pairs": "all"},
        files={"file": ("cands.jsonl", payload.encode(), "application/json")},
    )
    assert r.status_code == 200, r.text
    assert "read 3, kept 2, rejected 1" in r.text and "pairs added 2" in r.text
    r = admin.post("/admin/projects/second/overlap", data={"csrf_token": csrf, "overlap": "4"})
    assert r.status_code == 303
    r = admin.post(
        "/admin/projects/second/guidelines", data={"csrf_token": csrf, "guidelines": "# Rule\n<b>x</b>"}
    )
    assert r.status_code == 303
    page = admin.get("/admin/projects/second").text
    assert "overlap 4" in page and "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    # Annotate one pair and export it from the admin page.
    c = env.client("ann1")
    item = helpers.start(c, "second")
    c.post(helpers.form_action(item), data=helpers.answer(item))
    r = admin.get("/admin/projects/second/export?format=ours")
    assert r.status_code == 200 and r.headers["x-records-written"] == "1"
    assert '"annotator": "ann1"' in r.text
    stats = admin.get("/admin/projects/second").text
    assert "ann1" in stats and "Krippendorff" in stats
