import json

import pytest

from chatglm_rlhf.data.io import first_record, read_records
from chatglm_rlhf.errors import UserError


def test_first_record_is_the_first_object_or_an_error(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('\n[1, 2]\n{"responses": []}\n{"other": 1}\n', encoding="utf-8")
    assert first_record(path) == {"responses": []}  # blank lines and non-objects are passed over
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(UserError, match="empty.jsonl: no records"):
        first_record(empty)


def test_read_records_can_hand_the_line_number_to_the_parser(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text('{"x": 1}\n\nnot json\n{"x": 2}\n{"y": 3}\n', encoding="utf-8")
    rows, report = read_records(path, lambda obj, line: (obj["x"], line), with_line=True)
    assert rows == [(1, 1), (2, 4)]  # the blank line still counts in the numbering
    assert (report.read, report.kept, len(report.rejected)) == (4, 2, 2)


ROWS = [
    {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
    {"prompt": "capital of France?", "chosen": "Paris", "rejected": "Rome"},
]


def test_parquet_json_and_dataset_folders_read_like_jsonl(tmp_path):
    datasets = pytest.importorskip("datasets")
    from chatglm_rlhf.data.formats import load_comparisons

    ds = datasets.Dataset.from_list(ROWS)
    ds.to_parquet(str(tmp_path / "p.parquet"))
    ds.to_parquet(str(tmp_path / "disguised.jsonl"))  # Parquet under a JSONL name: told by its magic bytes
    ds.save_to_disk(str(tmp_path / "folder"))
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dict"))
    (tmp_path / "list.json").write_text(json.dumps(ROWS), encoding="utf-8")
    for name in ("p.parquet", "disguised.jsonl", "folder", "dict", "list.json"):
        comps, report = load_comparisons(tmp_path / name)
        assert (report.read, report.kept) == (2, 2), name
        assert [c.chosen for c in comps] == ["4", "Paris"], name


def test_bad_rows_of_a_parquet_file_are_reported_with_their_row(tmp_path):
    datasets = pytest.importorskip("datasets")
    from chatglm_rlhf.data.formats import load_comparisons

    datasets.Dataset.from_list([*ROWS, {"prompt": "x", "chosen": "a", "rejected": None}]).to_parquet(
        str(tmp_path / "p.parquet")
    )
    comps, report = load_comparisons(tmp_path / "p.parquet")
    assert len(comps) == 2 and len(report.rejected) == 1
    assert report.rejected[0].startswith(f"{tmp_path / 'p.parquet'}:3: ")


def test_unreadable_inputs_are_one_line_errors(tmp_path):
    from chatglm_rlhf.data.io import DataError, iter_json_lines

    binary = tmp_path / "b.jsonl"
    binary.write_bytes(b'{"a": 1}\n\xff\xfe\x00junk\n')
    # A bad byte rejects its own line, reported as file:line:column; the rest of the file is read.
    records, report = read_records(binary, dict)
    assert records == [{"a": 1}] and len(report.rejected) == 1
    assert "b.jsonl:2:" in report.rejected[0] and "not UTF-8 text" in report.rejected[0]
    with pytest.raises(DataError, match=r"b.jsonl") as err:  # strict: one line
        read_records(binary, dict, strict=True)
    assert "\n" not in str(err.value)
    fake = tmp_path / "f.jsonl"
    fake.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DataError, match="f.jsonl looks like Parquet"):
        list(iter_json_lines(fake))
    folder = tmp_path / "plain"
    folder.mkdir()
    with pytest.raises(DataError, match="not a dataset saved with save_to_disk"):
        read_records(folder, dict)


def test_an_empty_file_is_an_error_and_strict_is_one_line(tmp_path):
    from chatglm_rlhf.data.io import DataError

    empty = tmp_path / "e.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="e.jsonl: no records"):
        read_records(empty, dict)
    (tmp_path / "e.json").write_text("[]", encoding="utf-8")
    with pytest.raises(DataError, match="e.json: no records"):
        read_records(tmp_path / "e.json", dict)
    mixed = tmp_path / "m.jsonl"
    mixed.write_text('{"x": 1}\nnot json\n', encoding="utf-8")
    rows, report = read_records(mixed, lambda o: o["x"])
    assert rows == [1] and len(report.rejected) == 1
    with pytest.raises(
        DataError, match=r"m.jsonl: 1 of 2 records rejected and strict is on; first: .*m.jsonl:2:"
    ):
        read_records(mixed, lambda o: o["x"], strict=True)
