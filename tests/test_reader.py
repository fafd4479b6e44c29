"""The measurement reader never loses a row and never crashes on a file.

Every non-blank line after the header is one row, used or rejected with its reason
and its line number; a file covgap cannot read is refused with an InputError that
names the file and the fix. tests/data/crash holds one minimal file per root cause
of the crashes once seen (tests/data/crash/README.md); tests/csvgen.py generates
random files for the property test below and for scripts/fuzz_reader.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import csvgen
from covgap import ingest, measurements as meas
from covgap.errors import InputError
from test_refresh import hand_layers

CRASH = Path(__file__).parent / "data" / "crash"

# file in tests/data/crash → ("refused", what the message says) or ("rows", rows used, {line: reason})
CRASH_CASES = {
    "mixed_time_zones.csv": ("rows", 3, {}),
    "duplicate_column.csv": ("refused", "column 'lat' appears 2 times (columns 1, 4)"),
    "duplicate_column_after_trimming.csv": ("refused", "column 'rsrp' appears 2 times (columns 1, 4)"),
    "not_gzip.csv.gz": ("refused", "is named .gz but is not gzip-compressed"),
    "truncated.csv.gz": ("refused", "the gzip data is damaged or cut short"),
    "plain_text.csv.bz2": ("refused", "is named .bz2 but is not bzip2-compressed"),
    "real.csv.bz2": ("rows", 2, {}),
    "bom_only.csv": ("refused", "the file is empty"),
    "nbsp_only.csv": ("refused", "the file is empty"),
    "control_character_only.csv": ("refused", "missing required column(s)"),
    "leading_blank_lines.csv": ("rows", 2, {}),
    "quoted_header_with_separator.csv": ("refused", "columns found: x,lat, lon, rsrp"),
    "u2028_in_header.csv": ("rows", 2, {}),
    "trailing_separator.csv": ("rows", 2, {}),
    "unbalanced_quote.csv": ("rows", 4, {3: "unbalanced_quote"}),
    "values_only_in_unread_columns.csv": ("rows", 1, {3: "unparseable_coordinate"}),
    "wrong_field_counts.csv": ("rows", 2, {3: "wrong_field_count", 4: "wrong_field_count"}),
    "invalid_byte_at_end.csv": ("refused", "not UTF-8 or UTF-16 text (byte 49: b'\\xfa')"),
}


def test_the_crash_corpus_is_described():
    readme = (CRASH / "README.md").read_text(encoding="utf-8")
    on_disk = {p.name for p in CRASH.iterdir() if p.name != "README.md"}
    assert on_disk == set(CRASH_CASES)
    for name in CRASH_CASES:
        assert f"`{name}`" in readme, name


@pytest.mark.parametrize("name", sorted(CRASH_CASES))
def test_each_crash_case_is_refused_cleanly_or_read_with_reasons(hand_project, tmp_path, name):
    _, layers, ctx = hand_layers(hand_project)
    path = CRASH / name
    expected = CRASH_CASES[name]
    if expected[0] == "refused":
        with pytest.raises(InputError) as err:
            ingest.ingest_file(path, layers, ctx, sha256="0" * 64)
        assert str(err.value).startswith(f"{path}: ")
        assert expected[1] in str(err.value)
        return
    _, used, reasons = expected
    rec, _ = ingest.ingest_file(path, layers, ctx, sha256="cd" * 32, folder=tmp_path)
    assert rec.rows_used == used
    assert rec.rows_read == rec.rows_used + rec.rows_rejected == used + len(reasons)
    got = pd.read_csv(tmp_path / rec.rejected_file) if rec.rejected_file else pd.DataFrame(columns=["source_row", "reason"])
    assert got.set_index("source_row")["reason"].to_dict() == reasons


def test_leading_blank_lines_keep_line_numbers_exact(hand_project):
    _, _, ctx = hand_layers(hand_project)
    used = pd.concat([u for u, _ in meas.read_measurement_chunks(CRASH / "leading_blank_lines.csv", ctx)])
    assert used["source_row"].tolist() == [4, 5]


def test_mixed_time_zone_forms_are_all_read(hand_project):
    _, _, ctx = hand_layers(hand_project)
    used = pd.concat([u for u, _ in meas.read_measurement_chunks(CRASH / "mixed_time_zones.csv", ctx)])
    expected = pd.Timestamp("2026-03-14T10:00:00+07:00").timestamp()
    assert used["time_s"].tolist() == [expected, expected, expected + 300]


def test_a_malformed_line_keeps_the_line_itself_and_a_detail(hand_project):
    _, _, ctx = hand_layers(hand_project)
    rejected = pd.concat([r for _, r in meas.read_measurement_chunks(CRASH / "wrong_field_counts.csv", ctx)])
    first = rejected.iloc[0]
    assert first["detail"] == "2 fields, the header has 3"
    assert first["raw_fields"].count(",") == 1
    assert rejected["detail"].tolist()[1] == "5 fields, the header has 3"


# --------------------------------------------------------------------------- property test
@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_files_are_read_without_crash_or_lost_row(tmp_path_factory, data):
    """Any generated file is refused with an InputError or gives one row per non-blank data line.

    Derandomized (the same examples at every run, in CI too); scripts/fuzz_reader.py
    runs the same generator over 100,000 files.
    """
    chooser = csvgen.HypothesisChooser(data)
    name, content = csvgen.generate_file(chooser, max_rows=12, huge_field=140_000)
    chunk_rows = chooser.choice([1, 2, 5, 250_000])
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(content)
    outcome, unaccounted = csvgen.read_and_check(path, content, chunk_rows=chunk_rows)
    assert unaccounted == 0, outcome


# --------------------------------------------------------------------------- one bad file never stops a batch
def _covgap(*args):
    from click.testing import CliRunner

    from covgap import cli

    return CliRunner().invoke(cli.main, [str(a) for a in args])


@pytest.mark.parametrize("command", ["run", "refresh"])
def test_a_bad_file_is_refused_and_the_good_ones_are_used(hand_project, no_maps, command):
    folder = hand_project.parent / "measurements"
    (folder / "bom_only.csv").write_bytes((CRASH / "bom_only.csv").read_bytes())
    res = _covgap(command, "--config", hand_project)
    assert res.exit_code == 3, res.output
    assert "Files: 1 taken in, 0 skipped, 1 refused" in res.output
    assert f"  refused: {folder / 'bom_only.csv'}: the file is empty" in res.output
    files = pd.read_csv(hand_project.parent / "out" / "measurement_files.csv", keep_default_na=False)
    assert files[["file", "status", "rows_read", "rows_used"]].values.tolist() == [
        ["hand.csv", "taken", 34, 27], ["bom_only.csv", "refused", 0, 0]]
    assert files["refused_reason"].tolist() == ["", f"{folder / 'bom_only.csv'}: the file is empty; "
                                                    "expected a header line and measurement rows"]
    assert not (hand_project.parent / "out" / "errors.log").exists()


def test_an_internal_error_refuses_that_file_only_with_its_traceback_in_errors_log(hand_project, no_maps, monkeypatch):
    folder = hand_project.parent / "measurements"
    (folder / "z_second.csv").write_text("lat,lon,rsrp\n15.0,108.8,-95\n", encoding="utf-8")
    real = meas.normalise_rows

    def broken(raw, fmt, ctx, *, source_file, source_rows):
        if source_file == "z_second.csv":
            raise ZeroDivisionError("a bug")
        return real(raw, fmt, ctx, source_file=source_file, source_rows=source_rows)

    monkeypatch.setattr(meas, "normalise_rows", broken)
    res = _covgap("refresh", "--config", hand_project)
    assert res.exit_code == 3, res.output
    assert f"  refused: {folder / 'z_second.csv'}: internal_error: ZeroDivisionError: a bug" in res.output
    out = hand_project.parent / "out"
    log = (out / "errors.log").read_text(encoding="utf-8")
    assert "z_second.csv" in log and "Traceback" in log and "ZeroDivisionError: a bug" in log
    files = pd.read_csv(out / "measurement_files.csv", keep_default_na=False)
    assert files.set_index("file")["status"].to_dict() == {"hand.csv": "taken", "z_second.csv": "refused"}
    # The refused file is not recorded: once fixed, the next refresh takes it in.
    monkeypatch.setattr(meas, "normalise_rows", real)
    assert [r["name"] for r in __import__("json").loads((out / "store" / "manifest.json").read_text())["files"]] \
        == ["hand.csv"]


def test_every_file_refused_is_one_clean_message(hand_project, no_maps):
    folder = hand_project.parent / "measurements"
    (folder / "hand.csv").write_bytes(b"\xef\xbb\xbf")
    res = _covgap("run", "--config", hand_project)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert "no measurement file could be used" in res.output and "the file is empty" in res.output


def test_the_library_reads_the_good_files_and_lists_the_refused_ones(hand_project):
    from covgap import pipeline

    config, layers, _ = hand_layers(hand_project)
    good = hand_project.parent / "measurements" / "hand.csv"
    stats, report = pipeline.ingest_measurements([good, CRASH / "bom_only.csv", CRASH / "truncated.csv.gz"],
                                                 layers, config)
    assert report.files["status"].tolist() == ["taken", "refused", "refused"]
    assert report.rows_read == 34 and report.paths == [good]
    with pytest.raises(InputError, match="no measurement file could be used"):
        pipeline.ingest_measurements([CRASH / "bom_only.csv"], layers, config)


def test_a_folder_lists_text_compressed_text_and_what_must_be_refused(tmp_path):
    for name in ("a.csv", "b.csv.gz", "c.tsv.bz2", "d.txt.xz", "e.zip", "f.xlsx", "notes.md", "g.gz", ".hidden.csv"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in meas.list_measurement_files([tmp_path])] == [
        "a.csv", "b.csv.gz", "c.tsv.bz2", "d.txt.xz", "e.zip", "f.xlsx"]


def test_a_file_the_reader_skips_in_a_folder_is_said(tmp_path, caplog):
    import logging

    from covgap import formats

    (tmp_path / "a.csv").write_text("lat,lon,rsrp\n", encoding="utf-8")
    (tmp_path / "notes.log").write_text("drove QL1 in the rain\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="covgap.formats"):
        found = formats.list_measurement_files([tmp_path])
    assert [p.name for p in found] == ["a.csv"]
    assert "skipped" in caplog.text and "notes.log" in caplog.text and "not a measurement file type" in caplog.text
