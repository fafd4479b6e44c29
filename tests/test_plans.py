"""Plans against numbers worked out by hand: the fibre plan (spurs, least-cost set) and the measurement plan.

The fibre plan on the three-village district of conftest.py (drop distance 100 m, goal > 80%):
    passed: V1 90 (meets, 90%), V2 6 of 60, V3 0 of 40 → 96 of 200 households.
    The goal needs more than 0.8 × 200 = 160 passed: more than 64 households gained.
    V2 gains 60 − 6 = 54, V3 gains 40: neither alone passes 64; both gain 94 → 190/200 = 95%.
    Straight spurs (village centre to within 100 m of the route at x = 250120):
        V2 (250300, 1660150): 180 − 100 = 80 m; V3 (250500, 1660150): 380 − 100 = 280 m.
    Along the hand-made road (ROAD below), an L south of the district:
        (250100, 1659950) → east to (250500, 1659950) → north to (250500, 1660150), cut every 50 m.
        Road nodes within 100 m of the route: x = 250100 (20 m), 250150 (30 m), 250200 (80 m); the road
        distance to a node at x ≥ 250150 on the east leg is x − 250120.
        V2: no road node comes within 100 m of its centre; the closest are (250300, 1659950) (200 m,
            road 180 m) and (250500, 1660150) (200 m, road 580 m) → the first: 180 + (200 − 100) = 280 m.
        V3: nodes (250500, 1660050/1660100/1660150) are within 100 m; the nearest by road is
            (250500, 1660050), 380 + 100 = 480 m, nothing straight → 480 m.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess

import numpy as np
import pytest

from covgap import outputs, pipeline, plans
from covgap.config import load_config
from conftest import TO_WGS84, _feature, write_geojson

HAS_OGRINFO = shutil.which("ogrinfo") is not None
gdal = pytest.mark.skipif(not HAS_OGRINFO, reason="GDAL's ogrinfo is not installed (make system-deps)")

ROAD = [(250100.0, 1659950.0), (250500.0, 1659950.0), (250500.0, 1660150.0)]
PRICE = 50000.0  # the default [fibre] spur_cost_vnd_per_m


def with_roads(toml_path, road=ROAD):
    """Add the hand-made road to the hand project and name it in covgap.toml."""
    d = toml_path.parent
    write_geojson(d / "roads.geojson", [_feature({"type": "LineString", "coordinates": [list(TO_WGS84.transform(x, y)) for x, y in road]},
                                                 road_id="R1", name="Đường thử")])
    text = toml_path.read_text(encoding="utf-8").replace('fibre = "fibre.geojson"', 'fibre = "fibre.geojson"\nroads = "roads.geojson"')
    toml_path.write_text(text, encoding="utf-8")
    return toml_path


def run(toml_path):
    return pipeline.run_pipeline(load_config(toml_path), now_s=1_790_000_000)


def spur(results, vid):
    s = results.fibre_plan.spurs
    return s[s["village_id"] == vid].iloc[0]


# --------------------------------------------------------------------------- the knapsack
def test_least_cost_set_of_four_villages_beats_greedy():
    # A 400 m for 10 households, B 240 m for 8, C 120 m for 3, D 100 m for 1; more than 10 households needed.
    # A alone gives exactly 10: not more. Cheapest sets passing 10: B + C = 360 m (11), A + D = 500 m, A + C = 520 m.
    # Greedy by metres per household: B (30), then A (40, before C's 40) → 640 m: 78% dearer than the optimum.
    cost = np.array([400.0, 240.0, 120.0, 100.0]) * PRICE
    gain = np.array([10.0, 8.0, 3.0, 1.0])
    chosen, reached = plans.least_cost_spurs(cost, gain, need=10.0)
    assert reached and chosen.tolist() == [False, True, True, False]
    assert cost[chosen].sum() == 360 * PRICE
    greedy = plans.greedy_spurs(cost, gain, need=10.0)
    assert greedy.tolist() == [True, True, False, False] and cost[greedy].sum() == 640 * PRICE


def test_least_cost_set_when_nothing_or_too_much_is_needed():
    cost, gain = np.array([5.0, 7.0]), np.array([2.0, 3.0])
    chosen, reached = plans.least_cost_spurs(cost, gain, need=-0.1)  # already past the goal
    assert reached and not chosen.any()
    chosen, reached = plans.least_cost_spurs(cost, gain, need=0.0)  # exactly at the goal: one more household
    assert reached and chosen.tolist() == [True, False]
    chosen, reached = plans.least_cost_spurs(cost, gain, need=5.0)  # 5 households: not more than 5
    assert not reached and chosen.all()


def test_least_cost_set_is_optimal_against_every_subset():
    rng = np.random.default_rng(13)
    for _ in range(200):
        n = int(rng.integers(1, 8))
        cost = rng.integers(1, 50, n).astype(float)
        gain = rng.integers(0, 300, n) / 10.0
        need = float(rng.integers(-5, int(gain.sum() * 10) + 5)) / 10.0
        chosen, reached = plans.least_cost_spurs(cost, gain, need)
        best = min((sum(cost[list(s)]) for k in range(n + 1) for s in itertools.combinations(range(n), k)
                    if sum(gain[list(s)]) > need + 1e-9), default=None)
        if best is None:
            assert not reached
        else:
            assert reached and gain[chosen].sum() > need + 1e-9
            assert cost[chosen].sum() == pytest.approx(best)


# --------------------------------------------------------------------------- the plan on the hand district
def test_fibre_plan_with_straight_spurs(hand_project):
    results = run(hand_project)
    s = results.fibre_plan.spurs
    assert sorted(s["village_id"]) == ["V2", "V3"]  # V1 is past the goal: never listed
    v2, v3 = spur(results, "V2"), spur(results, "V3")
    assert [v2["households_gained"], v3["households_gained"]] == pytest.approx([54.0, 40.0])
    assert [v2["spur_length_m"], v3["spur_length_m"]] == pytest.approx([80.0, 280.0])
    assert v2["spur_along"] == v3["spur_along"] == "straight"
    assert [v2["cost_vnd"], v3["cost_vnd"]] == pytest.approx([80 * PRICE, 280 * PRICE])
    assert v2["cost_vnd_per_household"] == pytest.approx(round(80 * PRICE / 54))
    assert v2["route_id"] == "F1" and v2["route_operator"] == "VNPT-VinaPhone"
    assert v2["spur_length_m"] == pytest.approx(s.geometry.length.iloc[0], abs=0.2)
    assert bool(v2["in_district_plan"]) and bool(v3["in_district_plan"])
    district = results.fibre_plan.units.iloc[0]
    assert district["households_needed"] == pytest.approx(64.0)
    assert district["spurs"] == 2 and district["spur_m"] == pytest.approx(360.0)
    assert district["cost_vnd"] == pytest.approx(360 * PRICE)
    assert district["share_after"] == pytest.approx(0.95) and bool(district["reaches_goal"])
    commune = results.fibre_plan.units.iloc[1]
    assert commune["unit"] == "Xã Thử Nghiệm" and commune["spur_m"] == pytest.approx(360.0)
    # The scorecards carry the plan.
    assert results.district["fibre_plan_m"].iloc[0] == pytest.approx(360.0)
    assert results.communes["fibre_plan_cost_vnd"].iloc[0] == pytest.approx(360 * PRICE)


def test_fibre_plan_along_roads(hand_project):
    results = run(with_roads(hand_project))
    v2, v3 = spur(results, "V2"), spur(results, "V3")
    assert v2["spur_along"] == v3["spur_along"] == "roads"
    assert [v2["spur_length_m"], v3["spur_length_m"]] == pytest.approx([280.0, 480.0], abs=0.1)
    assert [v2["spur_straight_m"], v3["spur_straight_m"]] == pytest.approx([80.0, 280.0])
    geoms = results.fibre_plan.spurs.set_index("village_id").geometry
    assert geoms["V2"].length == pytest.approx(280.0, abs=0.1)
    assert geoms["V3"].length == pytest.approx(480.0, abs=0.1)
    # V3's spur leaves the route at the road's start, runs along the road, and stops 100 m short of the centre.
    assert geoms["V3"].coords[0] == pytest.approx((250120.0, 1659950.0), abs=0.05)
    assert geoms["V3"].coords[-1] == pytest.approx((250500.0, 1660050.0), abs=0.05)
    district = results.fibre_plan.units.iloc[0]
    assert district["spur_m"] == pytest.approx(760.0, abs=0.2) and district["cost_vnd"] == pytest.approx(760 * PRICE, rel=1e-3)


def test_fibre_plan_says_when_the_goal_cannot_be_reached(hand_project):
    results = run(hand_project)
    plan = plans.plan_fibre(results.villages, results.layers.fibre, level="commune", study_name="Huyện Thử",
                            goal_share=0.99, drop_distance_m=100, cost_per_m=PRICE)
    district = plan.units.iloc[0]
    # More than 198 passed needs more than 102 gained; both spurs give 94.
    assert not bool(district["reaches_goal"]) and district["spurs"] == 2
    assert district["share_after"] == pytest.approx(0.95)


def test_village_within_drop_distance_needs_cable_inside_not_a_spur(hand_project):
    results = run(hand_project)
    villages = results.villages.copy()
    villages.loc[0, "meets_fibre_goal"] = False  # V1 at 90%, as if the goal were higher: its centre is 20 m from the route
    s = plans.compute_spurs(villages, results.layers.fibre, drop_distance_m=100)
    v1 = s[s["village"] == 0].iloc[0]
    assert v1["needs"] == plans.NEEDS_IN_VILLAGE and v1["spur_length_m"] == 0 and v1.geometry is None


@gdal
def test_fibre_plan_outputs_read_back_with_ogrinfo(hand_project, tmp_path):
    results = run(with_roads(hand_project))
    folder = tmp_path / "out"
    folder.mkdir()
    outputs.write_outputs(results, folder)
    text = subprocess.run(["ogrinfo", "-ro", "-so", str(folder / outputs.GPKG_NAME), "fibre_plan"],
                          capture_output=True, check=True, text=True).stdout
    assert "Feature Count: 2" in text and "Line String" in text
    assert "spur_length_m: Real" in text and "route_operator: String" in text
    table = (folder / "fibre_plan.csv").read_text(encoding="utf-8").splitlines()
    assert table[0].startswith("village_id,name,unit,households") and len(table) == 3
    units = (folder / "fibre_plan_units.csv").read_text(encoding="utf-8").splitlines()
    assert len(units) == 3 and ",760" in units[1]
    assert "fibre_plan_m" in (folder / "scorecard_communes.csv").read_text(encoding="utf-8").splitlines()[0]
    json.loads((folder / "run.json").read_text(encoding="utf-8"))


@gdal
def test_fibre_plan_goes_to_the_owner_of_the_nearest_route(hand_project, tmp_path):
    from covgap import partners

    results = run(hand_project)
    zips = partners.write_partner_packages(results, tmp_path / "partners", generated="2026-01-01T00:00:00+0700")
    names = sorted(z.stem for z in zips)
    assert names == ["MobiFone", "VNPT-VinaPhone", "Viettel"]
    for name, count in (("VNPT-VinaPhone", 2), ("Viettel", 0), ("MobiFone", 0)):
        text = subprocess.run(["ogrinfo", "-ro", "-so", str(tmp_path / "partners" / name / f"{name}.gpkg"), "fibre_plan"],
                              capture_output=True, check=True, text=True).stdout
        assert f"Feature Count: {count}" in text, name
    shp = subprocess.run(["ogrinfo", "-ro", "-al", str(tmp_path / "partners" / "VNPT-VinaPhone" / "fibre_plan.shp")],
                         capture_output=True, check=True, text=True).stdout
    assert "spur_m (Real) = 280" in shp and "hh_gained (Real) = 40" in shp and "in_dist (Integer) = 1" in shp
    assert "fibre_plan (2" in (tmp_path / "partners" / "VNPT-VinaPhone" / "README.txt").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- where to measure next
# A road along the middle of row 2 (y = 1660050) from x = 250000 to 250600, the start at its west end.
# Only V3 lacks a 4G verdict (2 of its 6 cells measured: evidence 1/3 < 1/2). Its unmeasured cells on the
# road are (2,4) and (2,5), 1/6 of its households each; one of them brings it to 1/2, so the first, (2,4),
# is the one waypoint: the road node nearest its centre, (250450, 1660050). One day: 450 m there and
# 450 m back = 0.9 km. The drive passes cells (2,0)…(2,4); V3 then has 3/6 of its households in measured
# cells and gets a verdict: 40 households decided.
ROW2_ROAD = [(250000.0, 1660050.0), (250600.0, 1660050.0)]


def with_drive(toml_path, *, km_per_day=None):
    with_roads(toml_path, ROW2_ROAD)
    lon, lat = TO_WGS84.transform(250000.0, 1660050.0)
    extra = f'\n[plans]\nstart = "{lon:.9f},{lat:.9f}"\n' + (f"drive_km_per_day = {km_per_day}\n" if km_per_day else "")
    toml_path.write_text(toml_path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return toml_path


def test_measurement_plan_on_a_hand_made_road(hand_project):
    results = run(with_drive(hand_project))
    plan = results.measurement_plan
    assert plan.summary["villages_targeted"] == 1 and plan.summary["households_targeted"] == 40
    wp = plan.waypoints
    assert wp[["day", "seq", "village_id", "cell"]].values.tolist() == [[1, 1, "V3", 2 * 6 + 4]]
    assert (wp.geometry.x.iloc[0], wp.geometry.y.iloc[0]) == pytest.approx((250450.0, 1660050.0), abs=0.05)
    assert wp["households_in_cell"].iloc[0] == pytest.approx(40 / 6, abs=0.05)
    assert plan.days[["day", "km", "waypoints"]].values.tolist() == [[1, pytest.approx(0.9, abs=0.001), 1]]
    assert not bool(plan.days["over_budget"].iloc[0])
    assert plan.summary["cells_passed"] == 5
    v3 = plan.villages.iloc[0]
    assert v3["village_id"] == "V3" and v3["evidence_share_after"] == pytest.approx(0.5) and bool(v3["would_decide"])
    assert plan.summary["villages_decided"] == 1 and plan.summary["households_decided"] == 40
    # The route only uses the road and is one connected line from the start and back.
    line = plan.days.geometry.iloc[0]
    road = results.layers.roads.geometry.iloc[0]
    assert line.geom_type == "LineString" and line.coords[0] == line.coords[-1]
    assert road.buffer(0.01).contains(line)


def test_a_day_longer_than_the_budget_is_flagged(hand_project):
    results = run(with_drive(hand_project, km_per_day=0.5))
    assert results.measurement_plan.days[["day", "waypoints", "over_budget"]].values.tolist() == [[1, 1, True]]


def test_visiting_order_is_the_shortest_tour_on_a_square_of_roads():
    # Four corners of a 1 km square of roads: going round is 4 km; any tour across is 6 km.
    from covgap import roads

    rg = roads.build_road_graph([__import__("shapely").LineString([(0, 0), (1000, 0), (1000, 1000), (0, 1000), (0, 0)])])
    corners = [int(np.argmin(np.hypot(*(rg.xy - c).T))) for c in ((0, 0), (1000, 0), (1000, 1000), (0, 1000))]
    import networkx as nx

    dist = {a: nx.single_source_dijkstra_path_length(rg.graph, a, weight="length_m") for a in corners}
    tour = plans._tour(dist, [corners[0], corners[2], corners[1], corners[3]], corners[0])
    assert tour[0] == corners[0] and sorted(tour) == sorted(corners)
    length = sum(dist[a][b] for a, b in zip(tour, tour[1:] + tour[:1]))
    assert length == pytest.approx(4000.0)


@gdal
def test_plan_measurements_command_writes_gpx_that_gdal_reads(hand_project):
    from click.testing import CliRunner

    from covgap import cli

    toml = with_drive(hand_project)
    done = CliRunner().invoke(cli.main, ["plan-measurements", "--config", str(toml)])
    assert done.exit_code == 0, done.output
    assert "1 days, 0.9 km, 1 waypoints; 1 of 1 villages" in done.output
    folder = toml.parent / "out" / "measurement_plan"
    gpx = folder / "day_01.gpx"
    text = subprocess.run(["ogrinfo", "-ro", str(gpx)], capture_output=True, check=True, text=True).stdout
    assert "waypoints (Point)" in text and "tracks (Multi Line String)" in text
    for layer, count in (("waypoints", 1), ("tracks", 1), ("track_points", 19)):
        info = subprocess.run(["ogrinfo", "-ro", "-so", str(gpx), layer], capture_output=True, check=True, text=True).stdout
        assert f"Feature Count: {count}" in info, (layer, info)
    rows = (folder / "waypoints.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "day,seq,lon,lat,village_id,name,unit,cell,households_in_cell" and ",V3,Thôn Ba," in rows[1]
    assert json.loads((folder / "summary.json").read_text(encoding="utf-8"))["households_decided"] == 40


def _gpx_by_elementtree(plan, day: int, *, study: str) -> bytes:
    """The reference: the day's GPX built and written by ElementTree (the former outputs.gpx_day)."""
    import xml.etree.ElementTree as ET

    ET.register_namespace("", outputs.GPX_NS)
    q = lambda tag: f"{{{outputs.GPX_NS}}}{tag}"  # noqa: E731
    root = ET.Element(q("gpx"), {"version": "1.1", "creator": f"covgap {outputs.__version__}"})
    meta = ET.SubElement(root, q("metadata"))
    ET.SubElement(meta, q("name")).text = f"{study}: measurement plan, day {day}"
    wp = plan.waypoints[plan.waypoints["day"] == day].to_crs(4326)
    for _, r in wp.iterrows():
        pt = ET.SubElement(root, q("wpt"), {"lat": f"{r.geometry.y:.7f}", "lon": f"{r.geometry.x:.7f}"})
        ET.SubElement(pt, q("name")).text = f"D{day}-{int(r['seq']):03d} {r['name']}"
        ET.SubElement(pt, q("desc")).text = (f"village {r['village_id']} {r['name']} ({r['unit']}); "
                                             f"{r['households_in_cell']:g} households in cell {int(r['cell'])}")
        ET.SubElement(pt, q("sym")).text = "Waypoint"
    line = plan.days.loc[plan.days["day"] == day]
    line = line.to_crs(4326).geometry.iloc[0] if len(line) else None
    trk = ET.SubElement(root, q("trk"))
    ET.SubElement(trk, q("name")).text = f"Day {day}"
    seg = ET.SubElement(trk, q("trkseg"))
    if line is not None and not line.is_empty:
        for x, y in line.coords:
            ET.SubElement(seg, q("trkpt"), {"lat": f"{y:.7f}", "lon": f"{x:.7f}"})
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _plan_of_days(names: list[str]):
    """A measurement plan of three days: day 1 with the waypoints named ``names`` and a route, day 2 with one
    waypoint and an empty route, day 3 with no waypoint and no route."""
    from types import SimpleNamespace

    import geopandas as gpd
    import shapely

    n = len(names)
    waypoints = gpd.GeoDataFrame({
        "day": [1] * n + [2], "seq": list(range(1, n + 2)), "village_id": [f"V{k}" for k in range(n + 1)],
        "name": names + ["Thôn Cuối"], "unit": ["Nghĩa Hà & <Xã>"] * (n + 1),
        "cell": [100 + k for k in range(n + 1)], "households_in_cell": [7.9, 3.0, 0.25, 12.0][:n] + [1.0]},
        geometry=[shapely.Point(560_000 + 137.3 * k, 1_670_000 + 91.1 * k) for k in range(n + 1)], crs="EPSG:32649")
    days = gpd.GeoDataFrame({"day": [1, 2]}, geometry=[
        shapely.LineString([(560_000 + 10.7 * k, 1_670_000 + 3.3 * k * k) for k in range(40)]), shapely.LineString()],
        crs="EPSG:32649")
    return SimpleNamespace(waypoints=waypoints, days=days)


def test_gpx_days_are_byte_for_byte_what_elementtree_writes():
    """The GPX text writer against ElementTree, the independent writer it replaced: same bytes for every day
    (waypoints, a route, an empty route, no route), with names and a study title holding &, <, >, quotes."""
    plan = _plan_of_days(["Thôn Đại Sơn", 'Xóm "Mới" <A&B>', "Tổ 3 > 2"])
    for day in (1, 2, 3):
        assert outputs.gpx_day(plan, day, study='Tư Nghĩa "2026" & <x>') == \
            _gpx_by_elementtree(plan, day, study='Tư Nghĩa "2026" & <x>'), day


def test_a_name_with_a_control_character_still_gives_a_gpx_an_xml_reader_opens():
    """A control character XML forbids (here U+0001 and U+FFFF in a village's name) is left out: ElementTree's
    writer put it in as it was, and no XML reader would open the file."""
    import xml.etree.ElementTree as ET

    plan = _plan_of_days(["Thôn\x01 Một\uffff", "Hai\ttab"])
    root = ET.fromstring(outputs.gpx_day(plan, 1, study="x\x02y"))
    ns = {"g": outputs.GPX_NS}
    assert [e.text for e in root.findall("g:wpt/g:name", ns)] == ["D1-001 Thôn Một", "D1-002 Hai\ttab"]
    assert root.find("g:metadata/g:name", ns).text == "xy: measurement plan, day 1"
    assert len(root.findall("g:trk/g:trkseg/g:trkpt", ns)) == 40
