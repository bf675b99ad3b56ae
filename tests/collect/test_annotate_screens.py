"""Screens: the error page's user bar, the saved notice, folded history, changed guidelines, header CSS."""

from __future__ import annotations


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
