"""Reading candidates: every problem named by the file the user gave and its line (and column)."""

from __future__ import annotations

import json
import re

from chatglm_rlhf.collect.annotate import cli

GOOD = {"id": "g1", "prompt": "p", "responses": ["x", "y"]}


def _load(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_commands(parser)
    args = parser.parse_args(argv)
    return args.func(args)


def test_upload_report_names_the_uploaded_file(env, helpers):
    admin = env.client("boss")
    csrf = helpers.form_fields(admin.get("/admin").text)["csrf_token"]
    payload = json.dumps(GOOD) + "\nnot json\n" + json.dumps({"id": "one", "prompt": "p", "responses": ["x"]})
    r = admin.post(
        "/admin/load",
        data={"csrf_token": csrf, "project": "up", "overlap": "1", "pairs": "all"},
        files={"file": ("my cands.jsonl", payload.encode(), "application/json")},
    )
    assert r.status_code == 200, r.text
    assert "my cands.jsonl:2: invalid JSON" in r.text
    assert "my cands.jsonl:3: sample one: needs at least 2 responses" in r.text
    assert not re.search(r"tmp\w*\.jsonl", r.text), r.text


def test_bad_byte_bom_truncation_and_sample_problems_have_file_line_column(tmp_path, capsys):
    lines = [
        json.dumps({"id": f"s{i}", "prompt": f"prompt {i}", "responses": ["a", "b"]}) for i in range(400)
    ]
    body = "\n".join(lines).encode("utf-8")
    # A bad byte on line 301, inside the prompt: well past the decoder's first chunk.
    line301 = lines[300].encode("utf-8")
    col = line301.index(b"prompt 300") + 3
    offset = body.index(line301) + col
    body = body[:offset] + b"\xff" + body[offset + 1 :]
    extra = [
        b'{"id": "cut", "prompt": "p", "resp',  # a line cut short: its last string opens at column 30
        json.dumps({"prompt": "no id", "responses": ["a", "b"]}).encode(),
        json.dumps({"id": "one", "prompt": "p", "responses": ["a"]}).encode(),
        json.dumps({"id": "s7", "prompt": "again", "responses": ["a", "b"]}).encode(),
    ]
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + body + b"\n" + b"\n".join(extra) + b"\n")  # with a UTF-8 BOM
    assert _load(["load", str(path), "--project", "p", "--db", str(tmp_path / "a.db")]) == 0
    captured = capsys.readouterr()
    text = captured.err + captured.out
    assert f"{path}:301:{col + 1}: not UTF-8 text (invalid start byte: byte 0xff)" in text
    assert "byte 1854" not in text and f"{path}:1:" not in text  # the BOM does not cost line 1
    assert f"{path}:401: invalid JSON (Unterminated string starting at column 30)" in text
    assert f"{path}:402: sample ?: no 'id'" in text
    assert f"{path}:403: sample one: needs at least 2 responses to compare, has 1" in text
    assert f"{path}:404: sample s7: duplicate id (first at {path}:8)" in text
    assert "read 404, kept 402, rejected 2" in text and "samples added 399" in text
