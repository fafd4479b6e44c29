"""Outputs: byte-identical CSVs for the same input, atomic replacement, the lock."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from covgap import outputs, pipeline
from covgap.config import load_config
from covgap.errors import OutputError

NOW = 1_790_000_000


def _tree(folder):
    """Every file below ``folder`` by relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write(config, folder):
    results = pipeline.run_pipeline(config, now_s=NOW)
    with outputs.atomic_output_dir(folder) as tmp:
        outputs.write_outputs(results, tmp)
    return results


def test_same_input_gives_byte_identical_csvs(hand_project, tmp_path):
    config = load_config(hand_project)
    _write(config, tmp_path / "a")
    _write(config, tmp_path / "b")
    csvs = sorted(p.name for p in (tmp_path / "a").glob("*.csv"))
    assert {"scorecard_district.csv", "scorecard_communes.csv", "scorecard_villages.csv", "rejected_rows.csv"} <= set(csvs)
    for name in csvs:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in ("best_4g_rsrp_p50_dbm.tif", "cell_class.tif"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_every_row_is_used_or_reported(hand_project, tmp_path):
    import pandas as pd

    config = load_config(hand_project)
    results = _write(config, tmp_path / "out")
    files = pd.read_csv(tmp_path / "out" / "measurement_files.csv")
    rejected = pd.read_csv(tmp_path / "out" / "rejected_rows.csv")
    data_lines = sum(1 for line in open(hand_project.parent / "measurements" / "hand.csv", encoding="utf-8")) - 1
    assert files["rows_read"].sum() == data_lines == 34
    assert files["rows_used"].sum() + len(rejected) == data_lines
    assert int(results.stats["n_samples"].sum()) == files["rows_used"].sum()


def test_geotiffs_read_back_with_gdal(hand_project, tmp_path):
    import rasterio

    _write(load_config(hand_project), tmp_path / "out")
    with rasterio.open(tmp_path / "out" / "cell_class.tif") as src:
        assert (src.width, src.height) == (6, 3)
        assert src.crs.to_epsg() == 32649
        assert src.transform.c == 250000 and src.transform.f == 1660300
        assert src.read(1).tolist() == [[1, 1, 2, 3, 4, 4], [1, 1, 1, 3, 5, 5], [1, 4, 4, 4, 4, 4]]  # 5 = no 4G
    with rasterio.open(tmp_path / "out" / "best_4g_rsrp_p50_dbm.tif") as src:
        assert src.read(1)[1, 2] == -102 and src.nodata == -9999


def test_failed_run_leaves_previous_outputs_intact(hand_project, tmp_path, monkeypatch):
    config = load_config(hand_project)
    out = tmp_path / "out"
    _write(config, out)
    before = _tree(out)

    def broken(results, folder):
        (folder / "scorecard_villages.csv").write_text("half written")
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "write_rasters", broken)
    with pytest.raises(OSError):
        _write(config, out)
    assert _tree(out) == before
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_kill_between_the_two_renames_is_repaired(hand_project, tmp_path):
    out = tmp_path / "out"
    _write(load_config(hand_project), out)
    before = _tree(out)
    # The state a kill -9 leaves between "out → .out.previous" and "tmp → out".
    out.rename(tmp_path / ".out.previous")
    (tmp_path / ".out.tmp-999").mkdir()
    outputs.recover_output_dir(out)
    assert _tree(out) == before
    assert not (tmp_path / ".out.previous").exists() and not (tmp_path / ".out.tmp-999").exists()


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,sys,time; f=open(sys.argv[1],'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('locked', flush=True); time.sleep(30)", str(tmp_path / ".out.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match="another covgap run"):
            with outputs.output_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with outputs.output_lock(out):  # free again once the holder is gone
        pass


def test_covgap_imports_where_fcntl_does_not_exist(tmp_path):
    """Windows has no fcntl: the lock is filelock's, and nothing of covgap imports fcntl itself."""
    code = (
        "import sys\n"
        "class NoFcntl:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'fcntl':\n"
        "            raise ImportError('No module named fcntl (as on Windows)')\n"
        "sys.modules.pop('fcntl', None)\n"
        "sys.meta_path.insert(0, NoFcntl())\n"
        "import covgap.pipeline, covgap.cli, covgap.outputs, covgap.refresh\n"
        "try:\n"
        "    import fcntl\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('fcntl was importable')\n"
        "from pathlib import Path\n"
        "with covgap.outputs.output_lock(Path(sys.argv[1]) / 'out'):\n"
        "    print('locked')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "locked"


def test_the_lock_message_names_the_run_holding_it(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from pathlib import Path; from covgap import outputs\n"
         "with outputs.output_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(30)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=rf"another covgap run \(pid {holder.pid}\) is writing here"):
            with outputs.output_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_scorecard_csvs_open_in_excel_with_vietnamese_text(hand_project, tmp_path):
    import dataclasses

    import pandas as pd

    config = load_config(hand_project)
    _write(dataclasses.replace(config, output=dataclasses.replace(config.output, lang="vi")), tmp_path / "out")
    raw = (tmp_path / "out" / "scorecard_district.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the UTF-8 byte-order mark Excel needs to read UTF-8
    district = pd.read_csv(tmp_path / "out" / "scorecard_district.csv", encoding="utf-8-sig").set_index("target")
    assert district.loc["villages_4g", "label"] == "100% thôn có sóng 4G"
    assert district.loc["villages_4g", "status"] == "not met" and district.loc["villages_4g", "status_text"] == "chưa đạt"
    assert district.loc["fibre_households", "evidence"] == "theo tuyến cáp quang (không cần đo)"
    villages = pd.read_csv(tmp_path / "out" / "scorecard_villages.csv", encoding="utf-8-sig")
    assert list(villages.columns)[0] == "village_id" and "Thôn Một" in set(villages["name"])
    assert not (tmp_path / "out" / "measurement_files.csv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_every_geopackage_layer_is_also_geoparquet(hand_project, tmp_path):
    import geopandas as gpd
    import pandas as pd
    import pyogrio

    _write(load_config(hand_project), tmp_path / "out")
    gpkg = tmp_path / "out" / outputs.GPKG_NAME
    for name, _ in pyogrio.list_layers(gpkg):
        path = tmp_path / "out" / outputs.GEOPARQUET_DIR / f"{name}.parquet"
        info = pyogrio.read_info(gpkg, layer=name)
        if info["geometry_type"]:
            frame = gpd.read_parquet(path)
            assert frame.crs.to_epsg() == 4326
        else:
            frame = pd.read_parquet(path)
        assert len(frame) == info["features"], name


@pytest.mark.gdal
@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="GDAL's ogrinfo is not installed (make system-deps)")
def test_measurement_times_are_datetime_fields(hand_project, tmp_path):
    """GDAL reads the GeoPackage times as DateTime (UTC, the GeoPackage standard's form) and the CSV keeps
    local ISO 8601 text with its offset. By hand (conftest.HAND_ROWS): village V1's last sample is
    2026-03-01 08:11 +07:00; the dead zone (cells (1,3) and (0,3)) was measured 09:06 to 09:09 on 2026-03-02."""
    import re

    import pandas as pd

    _write(load_config(hand_project), tmp_path / "out")
    gpkg = str(tmp_path / "out" / outputs.GPKG_NAME)

    def ogrinfo(*args):
        return subprocess.run(["ogrinfo", "-ro", *args], capture_output=True, check=True, text=True).stdout

    for layer, fields in (("dead_zones", ("first_measured", "last_measured")), ("no_4g_zones", ("first_measured", "last_measured")),
                          ("villages", ("last_measured",)), ("cells", ("last_measured",))):
        schema = ogrinfo("-so", gpkg, layer)
        for field in fields:
            assert re.search(rf"^{field}: DateTime ", schema, flags=re.M), (layer, field, schema)
    zones = ogrinfo("-q", "-geom=NO", gpkg, "dead_zones")
    assert re.findall(r"(first|last)_measured \(DateTime\) = ([^\n]+)", zones) == [
        ("first", "2026/03/02 02:06:00+00"), ("last", "2026/03/02 02:09:00+00")]
    villages = ogrinfo("-q", "-geom=NO", "-where", "village_id = 'V1'", gpkg, "villages")
    assert "last_measured (DateTime) = 2026/03/01 01:11:00+00" in villages
    csv = pd.read_csv(tmp_path / "out" / "scorecard_villages.csv", encoding="utf-8-sig", dtype=str).set_index("village_id")
    assert csv.loc["V1", "last_measured"] == "2026-03-01T08:11:00+07:00"
