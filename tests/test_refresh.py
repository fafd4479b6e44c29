"""covgap refresh: the measurement store, idempotency, incremental = full rebuild, atomicity, formats, bad files.

Uses the hand-worked district of conftest.py and the small files of tests/data/
(written by tests/data/make_corpus.py; what each must give is in the tables below).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner, Result

from conftest import hand_csv_lines
from covgap import cli, ingest, measurements as meas, outputs, pipeline, refresh, store as store_mod
from covgap.config import ColumnMapping, load_config
from covgap.errors import InputError

DATA = Path(__file__).parent / "data"
NOW = 1_790_000_000  # 2026-09-21

# file in tests/data/formats → (format recognised, rows used, rejected reasons)
FORMAT_CASES = {
    "generic_comma.csv": ("generic", 3, {}),
    "generic_semicolon_decimal_comma.csv": ("generic", 3, {}),
    "generic_tab.tsv": ("generic", 3, {}),
    "gnettrack.txt": ("gnettrack", 2, {"missing_signal": 1}),  # Level "-" on an LTE row
    "cradlepoint.csv": ("cradlepoint", 2, {}),
    "utf8_bom.csv": ("generic", 2, {}),
    "utf16_excel_unicode_text.txt": ("generic", 2, {}),
    "mapped_vietnamese_columns.csv": ("mapped", 2, {}),
}

# file in tests/data/bad → what the refusal message must say
REFUSED_CASES = {
    "empty.csv": "the file is empty",
    "blank_lines_only.csv": "the file is empty",
    "header_only.csv": "no data rows; columns found: lat, lon, rsrp",
    "no_signal_column.csv": "missing required column(s): signal in dBm (rsrp, rsrp_dbm, rscp, rssi, dbm or level); "
                            "columns found: lat, lon, operator",
    "no_coordinates.csv": "missing required column(s): latitude (lat, latitude or y), longitude",
    "opencellid.csv": "this is an OpenCelliD tower list (columns radio, mcc, net, area, cell...): it lists towers",
    "windows1252.csv": "not UTF-8 or UTF-16 text (byte",
    "workbook.xlsx": "this is a ZIP file or an Excel workbook (.xlsx), not CSV text",
    "all_outside.csv": "no usable row: all 2 rows rejected (outside_study_area 2)",
}

# tests/data/bad/rows_each_bad.csv: line → reason (line 2 is used, line 3 is blank)
ROW_REASONS = {
    4: "duplicate_row", 5: "unparseable_coordinate", 6: "swapped_lat_lon", 7: "outside_study_area",
    8: "dbm_out_of_range", 9: "missing_signal", 10: "unknown_technology", 11: "unparseable_timestamp",
    12: "future_timestamp", 13: "unbalanced_quote", 14: "wrong_field_count",
}


# --------------------------------------------------------------------------- helpers
def covgap(*args: str) -> Result:
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path → bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def split_hand_file(project: Path) -> tuple[Path, Path]:
    """Split the hand CSV into a.csv (V1 rows) and b.csv (the rest, incl. a duplicate of a row of a.csv)."""
    lines = hand_csv_lines()
    header, rows = lines[0], lines[1:]
    inbox = project.parent / "inbox"
    inbox.mkdir()
    a, b = inbox / "a.csv", inbox / "b.csv"
    a.write_text("\n".join([header, *rows[:12]]) + "\n", encoding="utf-8")
    b.write_text("\n".join([header, *rows[12:]]) + "\n", encoding="utf-8")
    return a, b


def read_manifest(out: Path) -> dict:
    return json.loads((out / "store" / "manifest.json").read_text(encoding="utf-8"))


def hand_layers(project: Path):
    config = load_config(project)
    layers = pipeline.load_layers(config)
    return config, layers, ingest.read_context(layers, config, now_s=NOW)


# --------------------------------------------------------------------------- store and summary
def test_refresh_takes_a_file_into_the_store_and_writes_everything(hand_project, no_maps):
    out = hand_project.parent / "out"
    res = covgap("refresh", "--config", hand_project)
    assert res.exit_code == 0, res.output
    assert "Files: 1 taken in, 0 skipped, 0 refused" in res.output
    assert ("Rows of these files: 34 read, 27 used, 7 rejected (unparseable_coordinate 1, swapped_lat_lon 1, "
            "outside_study_area 1, dbm_out_of_range 1, missing_signal 1, future_timestamp 1, duplicate_row 1)") in res.output
    manifest = read_manifest(out)
    [rec] = manifest["files"]
    assert (rec["name"], rec["rows_read"], rec["rows_used"], rec["rows_rejected"]) == ("hand.csv", 34, 27, 7)
    assert rec["sha256"] == outputs.sha256_file(hand_project.parent / "measurements" / "hand.csv")
    rejected = pd.read_csv(out / "store" / rec["rejected_file"])
    assert list(rejected.columns) == store_mod.REJECTED_COLUMNS
    assert rejected.set_index("source_row")["reason"].to_dict() == {
        29: "duplicate_row", 30: "outside_study_area", 31: "swapped_lat_lon", 32: "missing_signal",
        33: "dbm_out_of_range", 34: "future_timestamp", 35: "unparseable_coordinate"}
    assert rejected.loc[rejected["source_row"] == 35, "raw_fields"].iloc[0].split(",")[1] == "abc"
    # Every output, the partner packages and the maps come from the one write path.
    for name in ("covgap.gpkg", "scorecard_villages.csv", "rejected_rows.csv", "cell_class.tif",
                 "partners/Viettel.zip"):
        assert (out / name).is_file(), name
    # A first run has nothing to compare with: no change report (not an empty one).
    assert not (out / "changes.csv").exists()
    assert len(no_maps) == 1 and no_maps[0].changes is None
    # The stored total is what a plain pipeline run computes.
    total = pd.read_parquet(out / "store" / "cells_total.parquet")
    expected = pipeline.run_pipeline(load_config(hand_project), now_s=NOW).stats
    assert total.drop(columns=["operator", "technology"]).equals(expected.drop(columns=["operator", "technology"]))
    assert total["operator"].tolist() == expected["operator"].tolist()


def test_rows_read_equal_rows_used_plus_rows_rejected(hand_project, no_maps):
    a, b = split_hand_file(hand_project)
    out = hand_project.parent / "out"
    assert covgap("refresh", "--config", hand_project, a, DATA / "bad" / "rows_each_bad.csv").exit_code == 0
    assert covgap("refresh", "--config", hand_project, b).exit_code == 0
    for rec in read_manifest(out)["files"]:
        rejected = pd.read_csv(out / "store" / rec["rejected_file"]) if rec["rejected_file"] else pd.DataFrame()
        assert rec["rows_read"] == rec["rows_used"] + rec["rows_rejected"] == rec["rows_used"] + len(rejected)
        assert sum(rec["rejected_by_reason"].values()) == rec["rows_rejected"]
    files = pd.read_csv(out / "measurement_files.csv")
    assert files["rows_read"].sum() == files["rows_used"].sum() + len(pd.read_csv(out / "rejected_rows.csv"))
    assert int(pd.read_parquet(out / "store" / "cells_total.parquet")["n_samples"].sum()) == files["rows_used"].sum()


def test_idempotent_same_content_is_skipped_whatever_its_name(hand_project, no_maps):
    out = hand_project.parent / "out"
    assert covgap("refresh", "--config", hand_project).exit_code == 0
    before = tree(out)
    copy = hand_project.parent / "renamed copy.csv"
    copy.write_bytes((hand_project.parent / "measurements" / "hand.csv").read_bytes())
    res = covgap("refresh", "--config", hand_project, hand_project.parent / "measurements", copy)
    assert res.exit_code == 0, res.output
    assert "skipped: hand.csv: already taken in as hand.csv (same SHA-256)" in res.output
    assert "skipped: renamed copy.csv: already taken in as hand.csv" in res.output
    assert "Nothing new to take in" in res.output
    assert tree(out) == before  # byte-identical: nothing was rewritten


def test_a_file_whose_size_is_shared_is_hashed_first_and_the_others_while_read(hand_project, no_maps):
    """A copy of a file in the same batch (same size) is hashed before reading and skipped; a file
    whose size no other has is hashed while it is read; a later file of a stored file's size but
    other content is hashed first and taken in. Every record holds its file's SHA-256."""
    import hashlib

    a, b = split_hand_file(hand_project)
    out = hand_project.parent / "out"
    copy = a.parent / "a copy.csv"
    copy.write_bytes(a.read_bytes())
    assert a.stat().st_size != b.stat().st_size
    res = covgap("refresh", "--config", hand_project, a, copy, b)
    assert res.exit_code == 0, res.output
    assert "skipped: a copy.csv: same content as a.csv in this batch" in res.output
    other = a.parent / "other.csv"
    text = a.read_text(encoding="utf-8")
    changed = text.replace("-9", "-8", 1)
    assert changed != text and len(changed) == len(text)
    other.write_text(changed, encoding="utf-8")
    res = covgap("refresh", "--config", hand_project, other)
    assert res.exit_code == 0, res.output
    recs = {r["name"]: r for r in read_manifest(out)["files"]}
    assert set(recs) == {"a.csv", "b.csv", "other.csv"}
    for f in (a, b, other):
        assert recs[f.name]["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
        if recs[f.name]["rejected_file"]:
            assert recs[f.name]["rejected_file"].startswith(f"rejected/{recs[f.name]['sha256'][:12]}_")
    assert not list((out / "store").rglob(".reading-*"))


def test_incremental_refreshes_equal_a_full_rebuild(hand_project, no_maps, tmp_path):
    a, b = split_hand_file(hand_project)
    (hand_project.parent / "measurements" / "hand.csv").unlink()
    full, inc = tmp_path / "full", tmp_path / "inc"
    # Full rebuild: `covgap run` on a folder holding both files.
    for f in (a, b):
        (hand_project.parent / "measurements" / f.name).write_bytes(f.read_bytes())
    assert covgap("run", "--config", hand_project, "--out", full).exit_code == 0
    # Incremental: one file, then the other (b.csv holds a duplicate of a row of a.csv).
    assert covgap("refresh", "--config", hand_project, "--out", inc, a).exit_code == 0
    res = covgap("refresh", "--config", hand_project, "--out", inc, b)
    assert res.exit_code == 0, res.output
    csvs = sorted(p.name for p in full.glob("*.csv"))
    assert len(csvs) >= 6
    # changes.csv (what changed since the previous run) is history, by definition: the
    # full rebuild, a first run, has none; the second refresh has one.
    assert "changes.csv" not in csvs and (inc / "changes.csv").is_file()
    for name in csvs:
        assert (full / name).read_bytes() == (inc / name).read_bytes(), name
    for name in ("cell_class.tif", "best_4g_rsrp_p50_dbm.tif", "store/cells_total.parquet"):
        assert (full / name).read_bytes() == (inc / name).read_bytes(), name
    # The same row keys: the rebuild's in one file per partition, the refreshes' in sorted runs (b.csv's new keys
    # as a second run beside a.csv's), hard-linked from the previous store, not rewritten.
    from covgap import dedupe

    rebuilt, refreshed = dedupe.StoredKeys(full / "store" / "row_keys"), dedupe.StoredKeys(inc / "store" / "row_keys")
    assert rebuilt.count() == refreshed.count() > 0
    for p in range(dedupe.PARTITIONS):
        np.testing.assert_array_equal(rebuilt.partition(p), refreshed.partition(p))
        assert len(rebuilt.files(p)) <= 1
    assert any(f.name.endswith("-001.npy") for p in range(dedupe.PARTITIONS) for f in refreshed.files(p))
    assert pd.read_csv(inc / "rejected_rows.csv")["reason"].value_counts()["duplicate_row"] == 1
    # The second refresh did not read a.csv again: only b.csv's statistics file is new.
    assert {r["name"] for r in read_manifest(inc)["files"]} == {"a.csv", "b.csv"}


def test_refresh_reports_what_changed(hand_project, no_maps):
    a, b = split_hand_file(hand_project)
    out = hand_project.parent / "out"
    # a.csv alone: V1 measured, no dead zone yet; a first run has no change report.
    assert covgap("refresh", "--config", hand_project, a).exit_code == 0
    assert not (out / "changes.csv").exists()
    res = covgap("refresh", "--config", hand_project, b)
    changes = pd.read_csv(out / "changes.csv")
    assert changes[["kind", "id", "change"]].values.tolist() == [["dead_zone", "DZ001", "opened"]]
    assert changes["name"].tolist() == ["Thôn Hai"]
    assert "dead zone DZ001: opened (0.0200 km², 20 households)" in res.output
    # MobiFone covers the two dead cells well: the zone closes and Thôn Hai's verdict changes.
    lines = ["timestamp,lat,lon,operator,technology,rsrp_dbm"]
    from conftest import cell_centre_lonlat

    for k, (row, col) in enumerate([(0, 3), (0, 3), (1, 3), (1, 3), (2, 2), (2, 2), (2, 3), (2, 3), (0, 2), (0, 2)]):
        lon, lat = cell_centre_lonlat(row, col)
        lines.append(f"2026-03-05T10:{k:02d}:00+07:00,{lat},{lon},MobiFone,LTE,-90")
    fix = hand_project.parent / "inbox" / "mobifone.csv"
    fix.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = covgap("refresh", "--config", hand_project, fix)
    assert res.exit_code == 0, res.output
    changes = pd.read_csv(out / "changes.csv")
    assert changes[["kind", "id", "change"]].values.tolist() == [
        ["dead_zone", "DZ001", "closed"], ["village", "V2", "now meets 4G target"]]


def test_dead_zones_are_matched_by_overlap_not_by_id(tmp_path):
    """Opened, closed, grown, shrunk and merged, on synthetic zones (ids deliberately shuffled)."""
    crs = "EPSG:32649"
    box = shapely.box
    old = gpd.GeoDataFrame({"zone_id": ["DZ001", "DZ002", "DZ003", "DZ004", "DZ005"],
                            "area_km2": [0.04, 0.02, 0.02, 0.01, 0.01], "villages": ["A", "B", "C", "D", "D"]},
                           geometry=[box(0, 0, 200, 200), box(1000, 0, 1200, 100), box(2000, 0, 2200, 100),
                                     box(3000, 0, 3100, 100), box(3200, 0, 3300, 100)], crs=crs)
    old.to_file(tmp_path / "covgap.gpkg", layer="dead_zones", driver="GPKG")
    new = gpd.GeoDataFrame({"zone_id": ["DZ001", "DZ002", "DZ003", "DZ004"], "area_km2": [0.06, 0.04, 0.01, 0.01],
                            "villages": ["D", "C", "B", "E"], "households": [5.0, 3.0, 1.0, 2.0]},
                           geometry=[box(3000, 0, 3300, 200).difference(box(3100, 100, 3300, 200)),  # DZ004+DZ005 merged
                                     box(2000, 0, 2200, 200),  # old DZ003 grown
                                     box(1000, 0, 1100, 100),  # old DZ002 shrunk
                                     box(5000, 0, 5100, 100)],  # opened; old DZ001 closed
                           crs=crs)

    class Fake:
        zones = new
        layers = type("L", (), {"crs": new.crs})()

    got = refresh._zone_changes(tmp_path / "covgap.gpkg", Fake)
    by = {(r["id"], r["change"]): r["detail"] for r in got}
    assert set(by) == {("DZ004", "opened"), ("DZ001", "grown"), ("DZ002", "grown"), ("DZ003", "shrunk"),
                       ("DZ001", "closed")}
    assert "merged from 2 zones" in by[("DZ001", "grown")] and "was DZ004, DZ005" in by[("DZ001", "grown")]
    assert by[("DZ003", "shrunk")].startswith("0.0200 → 0.0100 km² (was DZ002)")


def test_dry_run_changes_nothing(hand_project, no_maps):
    a, b = split_hand_file(hand_project)
    out = hand_project.parent / "out"
    res = covgap("refresh", "--config", hand_project, "--dry-run", a)
    assert res.exit_code == 0, res.output
    assert not out.exists()
    assert covgap("refresh", "--config", hand_project, a).exit_code == 0
    before = tree(out)
    res = covgap("refresh", "--config", hand_project, "--dry-run", a, b, DATA / "bad" / "empty.csv")
    assert res.exit_code == 3, res.output
    assert "would take in: b.csv (generic): 22 rows, 15 used, 7 rejected" in res.output
    assert "skipped: a.csv" in res.output and "refused:" in res.output and "Dry run: nothing was changed." in res.output
    assert tree(out) == before
    assert not list(out.parent.glob(".out.tmp-*"))


def test_refused_files_do_not_stop_the_batch(hand_project, no_maps):
    out = hand_project.parent / "out"
    bad = [DATA / "bad" / n for n in ("empty.csv", "no_signal_column.csv", "opencellid.csv")]
    res = covgap("refresh", "--config", hand_project, *bad, hand_project.parent / "measurements")
    assert res.exit_code == 3, res.output  # done, but some file was refused
    assert "Files: 1 taken in, 0 skipped, 3 refused" in res.output
    for path in bad:
        assert f"refused: {path}: {REFUSED_CASES[path.name]}" in res.output
    assert [r["name"] for r in read_manifest(out)["files"]] == ["hand.csv"]
    assert not (out / "store" / "rejected" / "empty.csv").exists()


def test_a_full_rebuild_with_no_usable_file_fails_and_keeps_previous_outputs(hand_project, no_maps, tmp_path):
    out = hand_project.parent / "out"
    assert covgap("run", "--config", hand_project).exit_code == 0
    before = tree(out)
    (hand_project.parent / "measurements" / "hand.csv").write_text("lat,lon,operator\n15.0,108.6,Viettel\n")
    res = covgap("run", "--config", hand_project)
    assert res.exit_code == 1 and "no measurement file could be used" in res.output
    assert tree(out) == before


def test_a_store_that_cannot_be_written_stops_the_refresh_and_keeps_previous_outputs(hand_project, no_maps,
                                                                                    monkeypatch):
    """The store's files are written by a forked child beside the analysis (refresh._write_store): the child
    inherits this patch, fails as a full disk would, and the refresh stops with the previous outputs intact."""
    from covgap import store as store_mod

    a, b = split_hand_file(hand_project)
    out = hand_project.parent / "out"
    assert covgap("refresh", "--config", hand_project, a).exit_code == 0
    before = tree(out)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_mod, "save_store", full_disk)
    res = covgap("refresh", "--config", hand_project, b)
    assert res.exit_code != 0 and "No space left on device" in res.output, res.output
    assert "Traceback" not in res.output
    assert tree(out) == before and not list(out.parent.glob(".out.tmp-*"))
    monkeypatch.undo()
    assert covgap("refresh", "--config", hand_project, b).exit_code == 0
    assert [r["name"] for r in read_manifest(out)["files"]] == ["a.csv", "b.csv"]


def test_store_built_on_another_grid_is_refused(hand_project, no_maps):
    assert covgap("refresh", "--config", hand_project).exit_code == 0
    text = hand_project.read_text(encoding="utf-8").replace("[signal]", "[grid]\ncell_size_m = 50\n\n[signal]")
    hand_project.write_text(text, encoding="utf-8")
    other = hand_project.parent / "other.csv"
    other.write_text("lat,lon,rsrp\n15.0055,108.6755,-90\n", encoding="utf-8")
    res = covgap("refresh", "--config", hand_project, other)
    assert res.exit_code == 1 and "built with other settings (grid changed)" in res.output and "covgap run" in res.output


# --------------------------------------------------------------------------- formats and bad files
@pytest.mark.parametrize("name", sorted(FORMAT_CASES))
def test_measurement_formats(hand_project, name):
    config, layers, ctx = hand_layers(hand_project)
    if name.startswith("mapped"):
        ctx.mapping = ColumnMapping(lat="Vĩ độ", lon="Kinh độ", signal_dbm="Cường độ (dBm)", operator="Nhà mạng")
    fmt_name, n_used, reasons = FORMAT_CASES[name]
    path = DATA / "formats" / name
    fmt = meas.detect_format(path, ctx.mapping)
    assert fmt.name == fmt_name
    used, rejected = map(pd.concat, zip(*meas.read_measurement_chunks(path, ctx, fmt=fmt)))
    assert len(used) == n_used
    assert rejected["reason"].value_counts().to_dict() == reasons
    assert used["signal_dbm"].between(-140, -44).all()
    assert set(used["operator"]) <= {"Viettel", "MobiFone", "VNPT-VinaPhone", "unknown"}


def test_format_details(hand_project):
    _, _, ctx = hand_layers(hand_project)

    def rows(name):
        return pd.concat([u for u, _ in meas.read_measurement_chunks(DATA / "formats" / name, ctx)])

    dc = rows("generic_semicolon_decimal_comma.csv")
    assert dc["signal_dbm"].tolist() == [-95.5, -101.0, -88.4]
    assert dc["operator"].tolist() == ["Viettel", "VNPT-VinaPhone", "MobiFone"]  # 45201 is MobiFone
    assert rows("generic_tab.tsv")["technology"].tolist() == ["4G", "3G", "2G"]
    gnt = rows("gnettrack.txt")
    assert gnt["technology"].tolist() == ["4G", "3G"]
    assert gnt["time_s"].iloc[0] == pd.Timestamp("2026-03-14 09:21:05+07:00").timestamp()
    assert rows("utf16_excel_unicode_text.txt")["operator"].tolist() == ["Viettel", "VNPT-VinaPhone"]


@pytest.mark.parametrize("name", sorted(REFUSED_CASES))
def test_bad_files_are_refused_naming_the_file_and_columns(hand_project, name):
    _, layers, ctx = hand_layers(hand_project)
    path = DATA / "bad" / name
    with pytest.raises(InputError) as err:
        ingest.ingest_file(path, layers, ctx, sha256="0" * 64)
    assert str(err.value).startswith(f"{path}: ")
    assert REFUSED_CASES[name] in str(err.value)


def test_each_bad_row_gets_its_reason_and_its_line(hand_project, tmp_path):
    _, layers, ctx = hand_layers(hand_project)
    rec, _ = ingest.ingest_file(DATA / "bad" / "rows_each_bad.csv", layers, ctx, sha256="ab" * 32, folder=tmp_path)
    assert (rec.rows_read, rec.rows_used, rec.rows_rejected) == (12, 1, 11)
    rejected = pd.read_csv(tmp_path / rec.rejected_file)
    assert rejected.set_index("source_row")["reason"].to_dict() == ROW_REASONS
    assert set(ROW_REASONS.values()) == set(meas.REJECT_REASONS)  # the corpus covers every reason


def test_chunk_boundaries_change_nothing(hand_project, tmp_path):
    """Tiny chunks (duplicates across chunks, rejected rows streamed per chunk) give the same store."""
    _, layers, ctx1 = hand_layers(hand_project)
    _, _, ctx2 = hand_layers(hand_project)
    src = hand_project.parent / "measurements" / "hand.csv"
    big, _ = ingest.ingest_file(src, layers, ctx1, sha256="1" * 64, folder=tmp_path / "big")
    small, _ = ingest.ingest_file(src, layers, ctx2, sha256="1" * 64, folder=tmp_path / "small", chunk_rows=4)
    keys = sorted(p.name for p in (tmp_path / "big" / "row_keys").glob("*.npy"))
    assert keys and keys == sorted(p.name for p in (tmp_path / "small" / "row_keys").glob("*.npy"))
    for rel in (big.stats_file, big.rejected_file, *(f"row_keys/{k}" for k in keys)):
        assert (tmp_path / "big" / rel).read_bytes() == (tmp_path / "small" / rel).read_bytes()
    n_keys = sum(len(np.load(tmp_path / "big" / "row_keys" / k)) for k in keys)
    assert n_keys == big.rows_used == 27  # one key per row kept: the duplicate has none of its own


# --------------------------------------------------------------------------- atomicity and concurrency
#: A refresh in a subprocess that stops at a known point, reached by patching the real functions there
#: (production code has no test hook): ``ingest`` after the first block of a file is read,
#: ``before_swap`` when everything is written into the temporary folder, just before it is synced and swapped.
_PAUSING_REFRESH = """
import sys, time
from covgap import cli, ingest, outputs
cli._write_maps = lambda r, c, **_: []
stage, seconds = sys.argv[1], float(sys.argv[2])

def pause():
    print(f"covgap-test: paused at {stage}", file=sys.stderr, flush=True)
    time.sleep(seconds)

if stage == "ingest":
    block = ingest.process_block
    ingest.process_block = lambda *a, **k: (block(*a, **k), pause())[0]
elif stage == "before_swap":
    fsync = outputs._fsync_tree
    outputs._fsync_tree = lambda *a, **k: (pause(), fsync(*a, **k))[1]
cli.main(args=sys.argv[3:], prog_name="covgap")
"""


def _spawn_refresh(project: Path, *paths: Path, pause_at: str | None = None, pause_s: float = 60,
                   extra: tuple[str, ...] = ()) -> subprocess.Popen:
    args = [pause_at or "none", str(pause_s), "refresh", "--config", str(project), *extra, *map(str, paths)]
    tmp = project.parent / "tmp"  # a refresh killed outright cannot remove its temporary folders: keep them here
    tmp.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", _PAUSING_REFRESH, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp)})


def _wait_for_pause(proc: subprocess.Popen, stage: str) -> None:
    for line in proc.stderr:
        if f"covgap-test: paused at {stage}" in line:
            return
    raise AssertionError(f"the refresh ended without pausing at {stage}: {proc.wait()} {proc.stdout.read()}")


@pytest.mark.parametrize("stage", ["ingest", "before_swap"])
def test_refresh_killed_part_way_leaves_previous_outputs_and_the_next_one_completes(hand_project, no_maps, stage):
    a, b = split_hand_file(hand_project)
    out = hand_project.parent / "out"
    assert covgap("refresh", "--config", hand_project, a).exit_code == 0
    before = tree(out)
    proc = _spawn_refresh(hand_project, b, pause_at=stage)
    try:
        _wait_for_pause(proc, stage)
        assert list(out.parent.glob(".out.tmp-*"))  # it was writing its temporary folder
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert tree(out) == before
    res = covgap("refresh", "--config", hand_project, b)
    assert res.exit_code == 0, res.output
    assert [r["name"] for r in read_manifest(out)["files"]] == ["a.csv", "b.csv"]
    assert not list(out.parent.glob(".out.tmp-*")) and not (out.parent / ".out.previous").exists()


def test_a_second_refresh_is_refused_while_one_runs_or_waits_with_wait(hand_project, no_maps):
    a, b = split_hand_file(hand_project)
    out = hand_project.parent / "out"
    first = _spawn_refresh(hand_project, a, pause_at="before_swap", pause_s=3)
    try:
        _wait_for_pause(first, "before_swap")
        res = covgap("refresh", "--config", hand_project, b)
        assert res.exit_code == 1 and "another covgap run (pid" in res.output
        waiting = _spawn_refresh(hand_project, b, extra=("--wait",))
        assert waiting.wait(timeout=120) == 0, waiting.stderr.read()
        assert first.wait(timeout=60) == 0
    finally:
        for p in (first,):
            if p.poll() is None:
                p.kill()
    assert [r["name"] for r in read_manifest(out)["files"]] == ["a.csv", "b.csv"]
    assert len(pd.read_csv(out / "measurement_files.csv")) == 2


def test_run_and_demo_use_the_same_write_path(hand_project, no_maps, monkeypatch):
    seen = []
    real = refresh.update_outputs
    monkeypatch.setattr(refresh, "update_outputs", lambda *a, **k: seen.append(k["full_rebuild"]) or real(*a, **k))
    assert covgap("run", "--config", hand_project).exit_code == 0
    assert covgap("refresh", "--config", hand_project).exit_code == 0
    assert seen == [True, False]
