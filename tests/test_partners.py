"""Partner packages: what the operators' GIS teams open, read back with GDAL's ogrinfo.

Fixture: the hand-worked district of conftest.py split into two communes with real
Tư Nghĩa names, so that Vietnamese values travel through every file:

    "Nghĩa Điền"        = x 250000–250400 (villages V1 "Thôn Một", V2 "Thôn Hai")
    "Thị trấn Sông Vệ"  = x 250400–250600 (village V3 "Thôn Ba")

Hand-worked expectations (see test_hand_worked.py for the cell classes):

* any-operator dead zone: 1 (cells (0,3) + (1,3)); Viettel's own dead zone: 1 (3 cells,
  (1,2) too); MobiFone: none of its own.
* any-operator no-4G zone: 1 (cells (1,4) + (1,5), Viettel on 3G at −75/−76 dBm); Viettel's own:
  the same 2 cells; MobiFone: none of its own.
* villages_without_4g: V2 fails for all operators; for Viettel alone V2 fails too (covered
  share of its measured area 1/4 → "both"); for MobiFone alone V2 has one measured cell of six
  (insufficient evidence) → "all_operators".
* needs_measurement: V1 (1 cell), V2 (2 cells), V3 (6 cells) → 3 features.
* villages_below_fibre_goal: V2 (0.1), V3 (0.0) → 2 features.
* communes_without_fibre: the centre of Nghĩa Điền (x = 250200) is 80 m from the route at
  x = 250120 (reach 100 m) → reached; Thị trấn Sông Vệ (x = 250500) is 380 m away → 1 feature.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pyogrio
import pytest
from click.testing import CliRunner

from conftest import X0, Y0, _box_lonlat, _feature, write_geojson
from covgap import outputs, partners, pipeline
from covgap.cli import main
from covgap.config import load_config

NOW_S = 1_790_000_000
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qml")  # .qml: the QGIS style beside each
HAS_OGRINFO = shutil.which("ogrinfo") is not None
gdal = pytest.mark.skipif(not HAS_OGRINFO, reason="GDAL's ogrinfo is not installed (make system-deps)")

EXPECTED = {
    "Viettel": {"dead_zones": 2, "no_4g_zones": 2, "villages_without_4g": 1, "needs_measurement": 3, "villages_below_fibre_goal": 2,
                "communes_without_fibre": 1, "fibre_plan": 0},
    "MobiFone": {"dead_zones": 1, "no_4g_zones": 1, "villages_without_4g": 1, "needs_measurement": 3, "villages_below_fibre_goal": 2,
                 "communes_without_fibre": 1, "fibre_plan": 0},
}


def _viet_project(hand_project: Path, *, export_crs: str = "EPSG:4326", operators: dict[str, str] | None = None) -> Path:
    d = hand_project.parent
    y0, y1 = Y0 - 300, Y0
    write_geojson(d / "communes.geojson", [
        _feature(_box_lonlat(X0, y0, X0 + 400, y1), commune_id="ND", name="Nghĩa Điền"),
        _feature(_box_lonlat(X0 + 400, y0, X0 + 600, y1), commune_id="SV", name="Thị trấn Sông Vệ"),
    ])
    villages = json.loads((d / "villages.geojson").read_text(encoding="utf-8"))
    for f in villages["features"]:
        f["properties"]["commune"] = "Thị trấn Sông Vệ" if f["properties"]["village_id"] == "V3" else "Nghĩa Điền"
    write_geojson(d / "villages.geojson", villages["features"])
    # The fibre route's owner is left out here, so the packages are those of the measured operators
    # (a fibre owner gets a package too: tests/test_evidence.py).
    fibre = json.loads((d / "fibre.geojson").read_text(encoding="utf-8"))
    for f in fibre["features"]:
        f["properties"]["operator"] = None
    write_geojson(d / "fibre.geojson", fibre["features"])
    if operators:
        csv_path = d / "measurements" / "hand.csv"
        text = csv_path.read_text(encoding="utf-8")
        for old, new in operators.items():
            text = text.replace(f",{old},", f",{new},")
        csv_path.write_text(text, encoding="utf-8")
    toml = hand_project.read_text(encoding="utf-8").replace('maps_dir = "maps"', f'maps_dir = "maps"\nexport_crs = "{export_crs}"')
    hand_project.write_text(toml, encoding="utf-8")
    return hand_project


@pytest.fixture
def viet_project(hand_project):
    return _viet_project(hand_project)


@pytest.fixture
def viet_results(viet_project):
    return pipeline.run_pipeline(load_config(viet_project), now_s=NOW_S)


@pytest.fixture
def exported(viet_results, tmp_path):
    """The run's outputs (GeoPackage, scorecards) and the partner packages beside them."""
    out = tmp_path / "out"
    out.mkdir()
    outputs.write_outputs(viet_results, out)
    partners.write_partner_packages(viet_results, out / "partners", generated="2026-09-21T00:00:00+0700")
    return out


def ogrinfo(*args: str) -> str:
    done = subprocess.run(["ogrinfo", "-ro", *args], capture_output=True, check=True)
    return done.stdout.decode("utf-8")


def ogr_summary(path: Path) -> dict:
    """Geometry type, feature count, fields and CRS as ogrinfo -al -so reports them."""
    text = ogrinfo("-al", "-so", str(path))
    fields = re.findall(r"^(\w+): (String|Integer|Integer64|Real|Date|DateTime) ", text, flags=re.M)
    return {
        "geometry": re.search(r"^Geometry: (.+)$", text, flags=re.M).group(1),
        "count": int(re.search(r"^Feature Count: (\d+)$", text, flags=re.M).group(1)),
        "fields": [f for f, _ in fields],
        "types": dict(fields),
        "text": text,
    }


def read_fields_csv(package: Path) -> list[dict]:
    with open(package / "fields.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- names and safety
def test_safe_slug_keeps_plain_names_and_neutralises_paths():
    assert partners.safe_slug("Viettel") == "Viettel"
    assert partners.safe_slug("VNPT-VinaPhone") == "VNPT-VinaPhone"
    assert partners.safe_slug("../x") == "x"
    assert partners.safe_slug("Viettel/..") == "Viettel"
    assert partners.safe_slug("/etc/passwd") == "etc_passwd"
    assert partners.safe_slug("..") == "operator"
    assert partners.safe_slug("Đông Á") == "Dong_A"
    assert partners.safe_slug("con") == "op_con"
    assert partners.package_slugs(["Viettel", "Viettel/..", "viettel"]) == {
        "Viettel": "Viettel", "Viettel/..": "Viettel-fd356865", "viettel": "viettel-bd507646"}


def test_a_package_name_depends_on_the_operator_name_alone():
    # Plain names keep their name; any other gets its slug and 8 hex of the SHA-256 of the exact name.
    assert [partners.package_name(n) for n in ("Viettel", "VNPT-VinaPhone", "unknown")] == [
        "Viettel", "VNPT-VinaPhone", "unknown"]
    assert partners.package_name("Đông Á") == "Dong_A-9820e256"
    assert partners.package_name("Dong_A") == "Dong_A-4df84e10"  # mixed case, not a known operator
    # The file name of "Dong_A" does not move when "Đông Á" or "Dong A" appear (it became Dong_A-2 before).
    alone = partners.package_slugs(["Dong_A", "Viettel"])
    together = partners.package_slugs(["Dong A", "Dong_A", "Viettel", "Đông Á", "đông á"])
    assert all(together[op] == slug for op, slug in alone.items())
    assert len({s.lower() for s in together.values()}) == len(together)  # distinct also on Windows and macOS


def test_every_shapefile_field_name_is_short_unique_and_documented():
    shorts = [s.short for s in partners.FIELDS.values()]
    assert all(len(s) <= 10 and s.isascii() for s in shorts)
    assert len(shorts) == len(set(shorts))
    levels = partners.level_fields(["commune", "commune_2025", "commune_2019", "xã phường"])
    assert [f.short for f in levels.values()] == ["commune", "commune_20", "commune_22", "xa_phuong"]


def test_hostile_operator_names_stay_inside_the_package_folder(hand_project, tmp_path):
    config = _viet_project(hand_project, operators={"Viettel": "../x", "MobiFone": "Viettel/.."})
    results = pipeline.run_pipeline(load_config(config), now_s=NOW_S)
    assert results.operators == ["../x", "Viettel/.."]
    root = tmp_path / "box" / "partners"
    zips = partners.write_partner_packages(results, root, generated="x")
    assert sorted(p.name for p in root.iterdir()) == ["Viettel-fd356865", "Viettel-fd356865.zip", "x-d6b96a97",
                                                      "x-d6b96a97.zip"]
    assert sorted(p.name for p in (tmp_path / "box").iterdir()) == ["partners"]  # nothing written beside it
    assert not (tmp_path / "x").exists() and not (tmp_path / "box" / "x").exists()
    for z in zips:
        with zipfile.ZipFile(z) as zf:
            for name in zf.namelist():
                assert not name.startswith("/") and ".." not in name.split("/") and "\\" not in name
                assert name.split("/")[0] == z.stem
    # The data keeps the operator's real name; only file names are slugs.
    dz = pyogrio.read_dataframe(root / "x-d6b96a97" / "x-d6b96a97.gpkg", layer="dead_zones")
    assert set(dz["operator"]) == {"../x"}


# --------------------------------------------------------------------------- contents
def test_package_files_and_counts(exported):
    root = exported / "partners"
    assert sorted(p.name for p in root.iterdir()) == ["MobiFone", "MobiFone.zip", "Viettel", "Viettel.zip"]
    for op, slug in (("Viettel", "Viettel"), ("MobiFone", "MobiFone")):
        package = root / slug
        expected_files = {f"{layer}{ext}" for layer in partners.LAYERS for ext in SHAPEFILE_PARTS}
        expected_files |= {f"{slug}.gpkg", "fields.csv", "README.txt"}
        assert {p.name for p in package.iterdir()} == expected_files
        for layer in partners.LAYERS:
            assert (package / f"{layer}.cpg").read_text() == "UTF-8"
            assert len(pyogrio.read_dataframe(package / f"{layer}.shp")) == EXPECTED[op][layer], (op, layer)
            assert len(pyogrio.read_dataframe(package / f"{slug}.gpkg", layer=layer)) == EXPECTED[op][layer]
        with zipfile.ZipFile(root / f"{slug}.zip") as zf:
            names = zf.namelist()
            assert names == sorted(names)
            assert {n.split("/", 1)[1] for n in names} == expected_files
            assert all(i.date_time == partners.ZIP_DATE_TIME for i in zf.infolist())
            assert zf.read(f"{slug}/README.txt") == (package / "README.txt").read_bytes()


def test_hand_worked_layer_values(viet_results):
    viettel = partners.partner_layers(viet_results, "Viettel")
    dz = viettel["dead_zones"].set_index("scope")
    assert dz.loc["operator", "n_cells"] == 3 and dz.loc["all_operators", "n_cells"] == 2
    assert dz.loc["operator", "households_in_zone"] == pytest.approx(30.0)  # 3 of V2's 6 cells × 60
    assert dz.loc["all_operators", "operator_n_samples"] == 4  # Viettel's 4 samples in (0,3), (1,3)
    assert dz.loc["all_operators", "operator_rsrp_dbm_p50"] == -120  # its 4G samples there: −118, −121, −120
    assert dz.loc["all_operators", "operator_rscp_dbm_p50"] == -110  # and its one 3G sample
    n4 = viettel["no_4g_zones"].set_index("scope")
    assert n4.loc["all_operators", "operator_rscp_dbm_p50"] == -76 and n4.loc["all_operators", "operator_share_4g"] == 0
    assert n4.loc["operator", "n_cells"] == 2 and n4.loc["operator", "households_in_zone"] == pytest.approx(13.3)
    v = viettel["villages_without_4g"].iloc[0]
    assert (v["name"], v["commune"], v["fails_for"]) == ("Thôn Hai", "Nghĩa Điền", "both")
    # Viettel alone in V2: (0,2) weak, (1,2) and (1,3) and (0,3) dead, 2 cells unmeasured.
    assert (v["operator_share_covered"], v["operator_share_weak"], v["operator_share_dead"]) == pytest.approx((0, 1 / 6, 3 / 6))
    assert v["operator_households_in_dead_zones"] == pytest.approx(30.0)
    mobi = partners.partner_layers(viet_results, "MobiFone")
    m = mobi["villages_without_4g"].iloc[0]
    assert (m["name"], m["operator_verdict_4g"], m["fails_for"]) == ("Thôn Hai", "insufficient evidence", "all_operators")
    assert m["operator_share_covered"] == pytest.approx(1 / 6)
    assert list(mobi["dead_zones"]["scope"]) == ["all_operators"]
    fib = viettel["villages_below_fibre_goal"]
    assert list(fib["name"]) == ["Thôn Hai", "Thôn Ba"]
    assert list(fib["fibre_share"]) == pytest.approx([0.1, 0.0])
    assert list(fib["spur_length_m"]) == pytest.approx([80, 280])
    c = viettel["communes_without_fibre"]
    assert list(c["name"]) == ["Thị trấn Sông Vệ"] and list(c["centre_dist_to_fibre_m"]) == pytest.approx([380.0])


def test_counts_agree_with_the_run_geopackage_and_scorecard(exported, viet_results):
    run_gpkg = exported / outputs.GPKG_NAME
    district = pd.read_csv(exported / "scorecard_district_figures.csv").iloc[0]
    run_zones = pyogrio.read_dataframe(run_gpkg, layer="dead_zones")
    run_op_zones = pyogrio.read_dataframe(run_gpkg, layer="operator_gap_zones")
    run_no4g = pyogrio.read_dataframe(run_gpkg, layer="no_4g_zones")
    run_needs = pyogrio.read_dataframe(run_gpkg, layer="needs_measurement")
    run_centres = pyogrio.read_dataframe(run_gpkg, layer="commune_centres")
    villages = pd.read_csv(exported / "scorecard_villages.csv")
    for op in viet_results.operators:
        package = exported / "partners" / partners.safe_slug(op)
        dz = pyogrio.read_dataframe(package / "dead_zones.shp")
        assert (dz["scope"] == "all_operators").sum() == len(run_zones) == district["dead_zones"]
        mine = run_op_zones["operator"] == op
        assert (dz["scope"] == "operator").sum() == (mine & (run_op_zones["kind"] == "no_service")).sum()
        n4 = pyogrio.read_dataframe(package / "no_4g_zones.shp")
        assert (n4["scope"] == "all_operators").sum() == len(run_no4g)
        assert (n4["scope"] == "operator").sum() == (mine & (run_op_zones["kind"] == "no_4g")).sum()
        assert sorted(dz.loc[dz["scope"] == "all_operators", "zone_id"]) == sorted(run_zones["zone_id"])
        v4 = pyogrio.read_dataframe(package / "villages_without_4g.shp")
        assert v4["fails_for"].isin(["all_operators", "both"]).sum() == district["villages_failing_4g"]
        assert len(pyogrio.read_dataframe(package / "needs_measurement.shp")) == len(run_needs)
        fib = pyogrio.read_dataframe(package / "villages_below_fibre_goal.shp")
        assert len(fib) == district["n_villages"] - district["villages_meeting_fibre_goal"]
        assert sorted(fib["village_id"]) == sorted(villages.loc[~villages["meets_fibre_goal"], "village_id"])
        com = pyogrio.read_dataframe(package / "communes_without_fibre.shp")
        assert len(com) == district["communes"] - district["communes_reached"] == (~run_centres["centre_reached"]).sum()


def test_fields_csv_lists_every_shapefile_field(exported):
    package = exported / "partners" / "Viettel"
    rows = read_fields_csv(package)
    assert all(r["meaning_vi"] and r["meaning_en"] and r["full_name"] and r["type"] for r in rows)
    for layer in partners.LAYERS:
        listed = [r["field"] for r in rows if r["layer"] == layer]
        actual = list(pyogrio.read_info(package / f"{layer}.shp")["fields"])
        assert actual == listed
        assert all(len(f) <= 10 for f in actual) and len(set(actual)) == len(actual)
        full = [r["full_name"] for r in rows if r["layer"] == layer]
        assert list(pyogrio.read_info(package / "Viettel.gpkg", layer=layer)["fields"]) == full


def test_readme_says_thresholds_period_inputs_and_version(exported, viet_results):
    text = (exported / "partners" / "Viettel" / "README.txt").read_text(encoding="utf-8")
    assert "covgap 0.1.0" in text and "2026-09-21T00:00:00+0700" in text
    assert "2026-03-01T08:00:00+07:00 — 2026-03-03T10:13:00+07:00" in text
    assert "usable_3g_dbm = -100 dBm" in text and "village_min_share = 0.5" in text
    assert "covered_dbm = -105 dBm" in text and "drop_distance_m = 100 m" in text and "goal_share = 0.8" in text
    for p in [*viet_results.layers.input_files, *viet_results.report.paths]:
        assert f"{outputs.sha256_file(p)}  {Path(p).relative_to(viet_results.config.source.parent).as_posix()}" in text
    assert "measurements/hand.csv" in text
    assert str(viet_results.config.source.parent) not in text  # no absolute path of the analyst's machine
    for layer in partners.LAYERS:
        assert layer in text


def test_same_input_same_bytes_except_readme(viet_results, tmp_path):
    a = partners.write_partner_packages(viet_results, tmp_path / "a", generated="2026-01-01T00:00:00+0700")
    b = partners.write_partner_packages(viet_results, tmp_path / "b", generated="2026-12-31T23:59:59+0700")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        same = (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
        assert same == (rel.name != "README.txt" and rel.suffix != ".zip"), rel
    for za, zb in zip(a, b):
        with zipfile.ZipFile(za) as x, zipfile.ZipFile(zb) as y:
            assert x.namelist() == y.namelist()
            for name in x.namelist():
                assert (x.read(name) == y.read(name)) == (not name.endswith("README.txt"))
        # Same-length generation times: the zips differ only inside README.txt's entry.
        bytes_a, bytes_b = za.read_bytes(), zb.read_bytes()
        assert len(bytes_a) == len(bytes_b)
        with zipfile.ZipFile(za) as x:
            info = x.getinfo(f"{za.stem}/README.txt")
            start = info.header_offset
            end = start + 30 + len(info.filename.encode()) + info.compress_size
        diff = [i for i in range(len(bytes_a)) if bytes_a[i] != bytes_b[i]]
        assert diff and all(start <= i < end or _in_central_crc(za, i) for i in diff)


def test_shared_layers_copied_from_the_first_package_are_what_writing_them_gives(viet_results, tmp_path):
    """The layers every package shares are written by the first package and copied by the others
    (write_partner_packages): each copy is the bytes a package written on its own has."""
    partners.write_partner_packages(viet_results, tmp_path / "all", generated="2026-01-01T00:00:00+0700")
    slugs = partners.package_slugs(viet_results.partner_operators)
    assert len(slugs) >= 2
    shared = list(partners.shared_layers(viet_results))
    for operator, slug in list(slugs.items())[1:]:  # the packages that copied them
        alone = tmp_path / "alone" / slug
        alone.mkdir(parents=True)
        partners.write_partner_package(viet_results, operator, alone, generated="2026-01-01T00:00:00+0700")
        in_all = sorted(p.name for p in (tmp_path / "all" / slug).iterdir())
        assert in_all == sorted(p.name for p in alone.iterdir())
        for name in in_all:
            assert (tmp_path / "all" / slug / name).read_bytes() == (alone / name).read_bytes(), (slug, name)
        assert {p.stem for p in alone.iterdir() if p.suffix == ".shp"} >= set(shared)


def _in_central_crc(zip_path: Path, offset: int) -> bool:
    """Is ``offset`` inside README.txt's CRC-32 in the central directory (the only other place it differs)?"""
    data = zip_path.read_bytes()
    name = f"{zip_path.stem}/README.txt".encode()
    pos = data.rfind(b"PK\x01\x02", 0, data.rfind(name))
    return pos + 16 <= offset < pos + 28  # CRC-32, compressed size, uncompressed size


# --------------------------------------------------------------------------- GDAL's view
@pytest.mark.gdal
@gdal
def test_ogrinfo_reads_every_shapefile(exported):
    package = exported / "partners" / "Viettel"
    rows = read_fields_csv(package)
    for layer in partners.LAYERS:
        s = ogr_summary(package / f"{layer}.shp")
        assert s["geometry"] == {"communes_without_fibre": "Point", "fibre_plan": "Line String"}.get(layer, "Polygon")
        assert s["count"] == EXPECTED["Viettel"][layer]
        assert s["fields"] == [r["field"] for r in rows if r["layer"] == layer]
        assert 'ID["EPSG",4326]' in s["text"]
        types = {r["field"]: r["type"] for r in rows if r["layer"] == layer}
        for field, t in s["types"].items():
            assert t == {"String": "String", "Integer": "Integer", "Real": "Real", "Date": "Date"}[types[field]], (layer, field)
    assert "villages_below_fibre_goal" in ogrinfo(str(package / "Viettel.gpkg"))


@pytest.mark.gdal
@gdal
@pytest.mark.gdal
@gdal
def test_measurement_times_are_date_fields(exported):
    """GeoPackage: DateTime in UTC (the standard's only form); shapefile: the local date (it has no DateTime).
    By hand (conftest.HAND_ROWS): Viettel is dead in cells (1,2) 09:02-09:03, (1,3) 09:06-09:07 and (0,3)
    09:08-09:09 on 2026-03-02 (+07:00); every operator only in (1,3) and (0,3), MobiFone covering (1,2)."""
    package = exported / "partners" / "Viettel"
    text = ogrinfo("-so", str(package / "Viettel.gpkg"), "dead_zones")
    assert re.search(r"^first_measured: DateTime ", text, flags=re.M) and re.search(r"^last_measured: DateTime ", text, flags=re.M)
    rows = ogrinfo("-q", "-geom=NO", str(package / "Viettel.gpkg"), "dead_zones")
    times = re.findall(r"scope \(String\) = (\w+).*?first_measured \(DateTime\) = ([^\n]+).*?"
                       r"last_measured \(DateTime\) = ([^\n]+)", rows, flags=re.S)
    assert sorted(times) == [("all_operators", "2026/03/02 02:06:00+00", "2026/03/02 02:09:00+00"),
                             ("operator", "2026/03/02 02:02:00+00", "2026/03/02 02:09:00+00")]
    shp = ogrinfo("-so", "-al", str(package / "dead_zones.shp"))
    assert re.search(r"^first_meas: Date ", shp, flags=re.M) and re.search(r"^last_meas: Date ", shp, flags=re.M)
    dates = re.findall(r"(first_meas|last_meas) \(Date\) = (\S+)", ogrinfo("-al", "-q", str(package / "dead_zones.shp")))
    assert sorted(set(dates)) == [("first_meas", "2026/03/02"), ("last_meas", "2026/03/02")]
    local = pyogrio.read_dataframe(package / "Viettel.gpkg", layer="dead_zones")
    assert {str(t.tz_convert("Asia/Ho_Chi_Minh")) for t in local["first_measured"]} == {
        "2026-03-02 09:02:00+07:00", "2026-03-02 09:06:00+07:00"}


def test_ogrinfo_reads_vietnamese_byte_for_byte(exported):
    package = exported / "partners" / "Viettel"
    raw = subprocess.run(["ogrinfo", "-ro", "-al", str(package / "communes_without_fibre.shp")],
                         capture_output=True, check=True).stdout
    assert "name (String) = Thị trấn Sông Vệ".encode() in raw
    raw = subprocess.run(["ogrinfo", "-ro", "-al", str(package / "villages_below_fibre_goal.shp")],
                         capture_output=True, check=True).stdout
    assert "commune (String) = Nghĩa Điền".encode() in raw
    assert raw.count("commune (String) = Nghĩa Điền".encode()) == 1
    assert "commune (String) = Thị trấn Sông Vệ".encode() in raw
    gpkg = subprocess.run(["ogrinfo", "-ro", "-al", str(package / "Viettel.gpkg"), "communes_without_fibre"],
                          capture_output=True, check=True).stdout
    assert "name (String) = Thị trấn Sông Vệ".encode() in gpkg
    assert "centre_dist_to_fibre_m (Real) = 380" in gpkg.decode("utf-8")


@pytest.mark.gdal
@gdal
@pytest.mark.parametrize("crs, name", [("EPSG:4326", "WGS 84"), ("EPSG:5898", "VN-2000 / TM-3 zone 491"),
                                       ("EPSG:3406", "VN-2000 / UTM zone 49N")])
def test_ogrinfo_reports_the_configured_crs(hand_project, tmp_path, crs, name):
    config = load_config(_viet_project(hand_project, export_crs=crs))
    results = pipeline.run_pipeline(config, now_s=NOW_S)
    partners.write_partner_packages(results, tmp_path / "p", generated="x")
    package = tmp_path / "p" / "Viettel"
    code = crs.split(":")[1]
    for layer in partners.LAYERS:
        text = ogr_summary(package / f"{layer}.shp")["text"]
        assert f'"{name}"' in text and f'ID["EPSG",{code}]' in text, (crs, layer)
    gpkg = ogrinfo("-so", str(package / "Viettel.gpkg"), "dead_zones")
    assert f'ID["EPSG",{code}]' in gpkg
    if crs != "EPSG:4326":
        prj = (package / "dead_zones.prj").read_text()
        assert prj.startswith('PROJCS["VN_2000_') and "D_Vietnam_2000" in prj
        # Coordinates are metres in the configured projection, not degrees.
        x = pyogrio.read_dataframe(package / "dead_zones.shp").geometry.centroid.x.iloc[0]
        assert x > 1000


# --------------------------------------------------------------------------- command line
def test_export_command_writes_only_the_partner_packages(viet_project, tmp_path):
    out = tmp_path / "exp"
    result = CliRunner().invoke(main, ["export", "--config", str(viet_project), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["partners"]
    assert sorted(p.name for p in (out / "partners").iterdir()) == [
        outputs.OWNER_MARKER, "MobiFone", "MobiFone.zip", "Viettel", "Viettel.zip"]
    assert "Viettel.zip" in result.output
    # A second export replaces the packages whole and leaves no temporary folder behind.
    result = CliRunner().invoke(main, ["export", "--config", str(viet_project), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["partners"]


def test_run_command_writes_the_packages_in_its_atomic_output(viet_project, tmp_path, monkeypatch):
    from covgap import cli

    monkeypatch.setattr(cli, "_write_maps", lambda results, config, **_: [])  # the maps have their own tests
    out = tmp_path / "run_out"
    result = CliRunner().invoke(main, ["run", "--config", str(viet_project), "--out", str(out), "--maps", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert (out / outputs.GPKG_NAME).is_file()
    assert sorted(p.name for p in (out / "partners").iterdir()) == ["MobiFone", "MobiFone.zip", "Viettel", "Viettel.zip"]
    assert not list(tmp_path.glob(".run_out.tmp-*")) and not list(tmp_path.glob(".run_out.previous"))


def test_long_strings_are_cut_for_the_dbf_at_a_character_boundary():
    text = "; ".join(["Thôn Nghĩa Điền Đông"] * 30)
    cut = partners._dbf_safe(text)
    assert len(cut.encode("utf-8")) <= partners.DBF_MAX_BYTES and cut.endswith("…")
    assert text.startswith(cut[:-1])
    assert partners._dbf_safe("Nghĩa Điền") == "Nghĩa Điền"


# --------------------------------------------------------------------------- the sample district
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "covgap.toml"


@pytest.mark.slow
@pytest.mark.gdal
@gdal
@pytest.mark.skipif(not (SAMPLE.parent / "villages.geojson").is_file(), reason="sample district not generated")
def test_sample_district_packages_read_back_with_ogrinfo(tmp_path):
    config = load_config(SAMPLE).replace_output(dir=tmp_path / "out")
    results = pipeline.run_pipeline(config)
    out = tmp_path / "out"
    out.mkdir()
    outputs.write_outputs(results, out)
    partners.write_partner_packages(results, out / "partners")
    district = pd.read_csv(out / "scorecard_district_figures.csv").iloc[0]
    assert results.operators and len(list((out / "partners").glob("*.zip"))) == len(results.operators)
    for op in results.operators:
        package = out / "partners" / partners.safe_slug(op)
        rows = read_fields_csv(package)
        raw = b""
        for layer in partners.LAYERS:
            s = ogr_summary(package / f"{layer}.shp")
            assert s["geometry"] == {"communes_without_fibre": "Point", "fibre_plan": "Line String"}.get(layer, "Polygon")
            assert s["fields"] == [r["field"] for r in rows if r["layer"] == layer]
            assert s["count"] == len(pyogrio.read_dataframe(package / f"{package.name}.gpkg", layer=layer))
            assert 'ID["EPSG",4326]' in s["text"]
            raw += subprocess.run(["ogrinfo", "-ro", "-al", str(package / f"{layer}.shp")], capture_output=True,
                                  check=True).stdout
        # The 13 former communes are a level of every village layer: their names come back byte for byte.
        assert "commune (String) = Nghĩa Điền\n".encode() in raw
        assert "commune (String) = Thị trấn Sông Vệ\n".encode() in raw
        dz = pyogrio.read_dataframe(package / "dead_zones.shp")
        assert (dz["scope"] == "all_operators").sum() == district["dead_zones"]
        v4 = pyogrio.read_dataframe(package / "villages_without_4g.shp")
        assert v4["fails_for"].isin(["all_operators", "both"]).sum() == district["villages_failing_4g"]
        fib = pyogrio.read_dataframe(package / "villages_below_fibre_goal.shp")
        assert len(fib) == district["n_villages"] - district["villages_meeting_fibre_goal"]
        com = pyogrio.read_dataframe(package / "communes_without_fibre.shp")
        assert len(com) == district["communes"] - district["communes_reached"]


@pytest.mark.gdal
@gdal
def test_empty_layers_keep_their_schema(hand_project, tmp_path):
    """With fibre within reach of everything, the two fibre layers are empty but still open with all fields."""
    config_path = _viet_project(hand_project)
    text = config_path.read_text(encoding="utf-8").replace("drop_distance_m = 100", "drop_distance_m = 1000")
    config_path.write_text(text.replace("centre_reach_m = 100", "centre_reach_m = 1000"), encoding="utf-8")
    results = pipeline.run_pipeline(load_config(config_path), now_s=NOW_S)
    partners.write_partner_packages(results, tmp_path / "p", generated="x")
    package = tmp_path / "p" / "MobiFone"
    rows = read_fields_csv(package)
    for layer, geometry in (("villages_below_fibre_goal", "Polygon"), ("communes_without_fibre", "Point")):
        s = ogr_summary(package / f"{layer}.shp")
        assert (s["count"], s["geometry"]) == (0, geometry)
        assert s["fields"] == [r["field"] for r in rows if r["layer"] == layer]
        assert pyogrio.read_info(package / "MobiFone.gpkg", layer=layer)["features"] == 0


def test_export_uses_what_refresh_took_in(viet_project, tmp_path, monkeypatch):
    """Export analyses the output folder's store, so a file taken in by refresh counts."""
    from covgap import cli

    monkeypatch.setattr(cli, "_write_maps", lambda results, config, **_: [])
    out = tmp_path / "o"
    assert CliRunner().invoke(main, ["run", "--config", str(viet_project), "--out", str(out)]).exit_code == 0
    extra = tmp_path / "extra.csv"
    first = (viet_project.parent / "measurements" / "hand.csv").read_text(encoding="utf-8").splitlines()[1]
    ts, lat, lon = first.split(",")[:3]
    extra.write_text("timestamp,lat,lon,operator,technology,rsrp_dbm\n"
                     + "".join(f"2026-03-05T10:0{i}:00+07:00,{lat},{lon},Vietnamobile,LTE,-9{i}\n" for i in range(3)),
                     encoding="utf-8")
    result = CliRunner().invoke(main, ["refresh", "--config", str(viet_project), "--out", str(out), str(extra)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["export", "--config", str(viet_project), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Vietnamobile.zip" in sorted(p.name for p in (out / "partners").iterdir())


def test_readme_has_no_nul_or_other_control_characters(viet_results, tmp_path):
    import dataclasses

    cfg = viet_results.config
    hostile = dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, name="Huyện\x00 Thử\x07\x1b[31m"))
    results = dataclasses.replace(viet_results, config=hostile)
    partners.write_partner_packages(results, tmp_path / "partners", generated="2026-09-21T00:00:00+0700")
    text = (tmp_path / "partners" / "Viettel" / "README.txt").read_text(encoding="utf-8")
    assert "Huyện Thử[31m" in text
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text)
    assert partners.strip_control_characters("a\x00b\tc\r\nd\x85") == "ab\tc\nd"


@gdal
def test_geopackage_fields_carry_vietnamese_and_english_aliases(exported):
    import sqlite3

    gpkg = exported / "partners" / "Viettel" / "Viettel.gpkg"
    with sqlite3.connect(gpkg) as db:
        rows = {(t, c): (n, title) for t, c, n, title in
                db.execute("SELECT table_name, column_name, name, title FROM gpkg_data_columns")}
        ext = db.execute("SELECT extension_name FROM gpkg_extensions WHERE table_name = 'gpkg_data_columns'").fetchall()
    assert ext == [("gpkg_schema",)]
    assert rows[("dead_zones", "households_in_zone")] == (partners.FIELDS["households_in_zone"].vi,
                                                          partners.FIELDS["households_in_zone"].en)
    for layer in partners.LAYERS:
        fields = list(pyogrio.read_info(gpkg, layer=layer)["fields"])
        assert all((layer, f) in rows for f in fields), layer
    # GDAL still opens every layer of the package with the schema extension in it.
    out = subprocess.run(["ogrinfo", "-so", "-al", str(gpkg)], capture_output=True, text=True)
    assert out.returncode == 0 and "ERROR" not in out.stderr


@gdal
def test_styles_for_qgis_beside_each_shapefile_and_in_the_geopackage(exported):
    import xml.etree.ElementTree as ET

    package = exported / "partners" / "Viettel"
    for layer in partners.LAYERS:
        root = ET.parse(package / f"{layer}.qml").getroot()  # well-formed XML
        colour = ",".join(map(str, partners.LAYER_COLOURS[layer]))
        assert root.tag == "qgis" and colour in (package / f"{layer}.qml").read_text(encoding="utf-8")
    # layer_styles is an attributes table GDAL lists and reads: one default style per layer.
    info = subprocess.run(["ogrinfo", "-so", str(package / "Viettel.gpkg"), "layer_styles"],
                          capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert f"Feature Count: {len(partners.LAYERS)}" in info.stdout
    styles = pyogrio.read_dataframe(package / "Viettel.gpkg", layer="layer_styles")
    assert sorted(styles["f_table_name"]) == sorted(partners.LAYERS) and styles["useAsDefault"].all()


def test_vn2000_transformation_names_are_pyproj_s():
    """The names the README gives are PROJ's: EPSG:6960 carries the 7 parameters of Decision 05/2007/QĐ-BTNMT
    (ΔX −191.90441429 m … k = 1.000000252906278), proj.db aliases it to the ESRI name ArcGIS lists, and PROJ
    ranks it first for VN-2000 → WGS 84."""
    import sqlite3

    import pyproj
    from pyproj.transformer import TransformerGroup

    t, other = partners.VN2000_TRANSFORMATION, partners.VN2000_OTHER_TRANSFORMATION
    op = pyproj.crs.CoordinateOperation.from_epsg(t["epsg"])
    assert op.name == t["name"]
    params = {p.name: p.value for p in op.params}
    assert (params["X-axis translation"], params["Y-axis translation"], params["Z-axis translation"]) == (
        -191.90441429, -39.30318279, -111.45032835)
    assert (params["X-axis rotation"], params["Y-axis rotation"], params["Z-axis rotation"]) == (-0.00928836, 0.01975479, -0.00427372)
    assert params["Scale difference"] == 0.252906278
    assert pyproj.crs.CoordinateOperation.from_epsg(other["epsg"]).name == other["name"]
    with sqlite3.connect(Path(pyproj.datadir.get_data_dir()) / "proj.db") as db:
        aliases = dict(db.execute("SELECT code, alt_name FROM alias_name WHERE table_name = 'helmert_transformation' "
                                  "AND auth_name = 'EPSG' AND code IN (?, ?)", (t["epsg"], other["epsg"])).fetchall())
    assert aliases == {t["epsg"]: t["esri"], other["epsg"]: other["esri"]}
    first = TransformerGroup(partners.VN2000_GEOGRAPHIC, 4326).transformers[0]
    assert t["name"] in first.description
    assert [partners.is_vn2000(c) for c in ("EPSG:3405", "EPSG:5896", "EPSG:5899", "EPSG:9210", "EPSG:4756", "EPSG:4326",
                                             "EPSG:32649")] == [True] * 5 + [False] * 2


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:5898"])
def test_readme_states_each_file_s_crs_and_the_vn2000_transformation(hand_project, tmp_path, crs):
    config = load_config(_viet_project(hand_project, export_crs=crs))
    results = pipeline.run_pipeline(config, now_s=NOW_S)
    partners.write_partner_packages(results, tmp_path / "p", generated="x")
    text = (tmp_path / "p" / "Viettel" / "README.txt").read_text(encoding="utf-8")
    name = {"EPSG:4326": "EPSG:4326 — WGS 84 (ESRI .prj: GCS_WGS_1984)",
            "EPSG:5898": "EPSG:5898 — VN-2000 / TM-3 zone 491 (ESRI .prj: VN_2000_TM-3_zone_491)"}[crs]
    section = text[text.index("COORDINATE REFERENCE SYSTEMS"):]
    assert f"  {name}:\n    dead_zones.shp (+ .prj), no_4g_zones.shp" in section
    assert "fibre_plan.shp (+ .prj), Viettel.gpkg (7 lớp / layers)" in section
    assert "analysis computed in: EPSG:32649 — WGS 84 / UTM zone 49N" in section
    if crs == "EPSG:5898":
        assert "choose VN_2000_To_WGS_1984_2: the 7-parameter Helmert of Decision 05/2007/QĐ-BTNMT" in section
        assert "covgap (PROJ) used EPSG:6960 between VN-2000 and WGS 84" in section
    else:
        assert "VN_2000_To_WGS_1984" not in text


def test_readme_gives_the_hash_of_the_bytes_taken_in(viet_results):
    """A measurement file changed after it was read: the README names the hash of the bytes the results come
    from (recorded when the file was taken in), not of the file as it is now; the layers are hashed now."""
    (path,) = [Path(p) for p in viet_results.report.paths]
    before = outputs.sha256_file(path)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("15.0,108.8,-90,4G,Viettel,2026-03-04T08:00:00+07:00\n")
    assert outputs.sha256_file(path) != before
    hashes = dict((name, sha) for name, sha in partners.input_hashes(viet_results))
    assert hashes[path.relative_to(viet_results.config.source.parent).as_posix()] == before
    for p in viet_results.layers.input_files:
        assert hashes[Path(p).relative_to(viet_results.config.source.parent).as_posix()] == outputs.sha256_file(p)
