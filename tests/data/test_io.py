import pytest

from chatglm_rlhf.data.io import first_record, read_records
from chatglm_rlhf.errors import UserError


def test_first_record_is_the_first_object_or_an_error(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('\n[1, 2]\n{"responses": []}\n{"other": 1}\n', encoding="utf-8")
    assert first_record(path) == {"responses": []}  # blank lines and non-objects are passed over
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(UserError, match="empty.jsonl: no JSON records"):
        first_record(empty)


def test_read_records_can_hand_the_line_number_to_the_parser(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text('{"x": 1}\n\nnot json\n{"x": 2}\n{"y": 3}\n', encoding="utf-8")
    rows, report = read_records(path, lambda obj, line: (obj["x"], line), with_line=True)
    assert rows == [(1, 1), (2, 4)]  # the blank line still counts in the numbering
    assert (report.read, report.kept, len(report.rejected)) == (4, 2, 2)
