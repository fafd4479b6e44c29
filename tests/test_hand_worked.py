"""Every indicator of the three-village district against numbers worked out by hand.

See conftest.py for the layout. Cells are (row, col); cell number = row × 6 + col.
The analysis grid must come out as x0 = 250000, y0 = 1660300, 3 rows × 6 cols.

Any-operator classes (min_samples = 2, covered ≥ −105, 4G usable ≥ −115, 3G usable ≥ −100, lower median):
    V1: (0,0) −95 C, (1,0) −104 C, (2,0) −85 C, (0,1) −96 C, (1,1) −101 C, (2,1) 1 sample I
    V2: (0,2) −112 W, (1,2) Viettel −125 S / MobiFone −102 C → C, (1,3) −121 S,
        (0,3) LTE −120 + UMTS −110: neither usable → S, (2,2), (2,3) unmeasured I
    V3: (0,4) 1 sample I, (1,4) and (1,5) UMTS −75/−76 → N (no 4G), the rest unmeasured I
Dead zone (no service): cells (0,3) + (1,3) share an edge → one zone of 2 cells = 0.02 km².
No-4G zone: cells (1,4) + (1,5) → one zone of 2 cells = 0.02 km².
Evidence (households spread evenly over each village's 6 cells, no population raster):
    V1 5/6 measured, all covered → meets; V2 4/6 measured, 1/6 covered → 1/4 of the measured → fails;
    V3 2/6 < 1/2 → insufficient evidence.
    District: (100·5/6 + 60·4/6 + 40·2/6) / 200 = 0.68333 < 0.8, but a dead zone is found → not met.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from covgap import pipeline
from covgap.cellstats import CellClass
from covgap.config import load_config


@pytest.fixture
def results(hand_project):
    config = load_config(hand_project)
    return pipeline.run_pipeline(config, now_s=1_790_000_000)  # 2026-09-21


def by_id(results, vid):
    v = results.villages
    return v[v["village_id"] == vid].iloc[0]


def test_grid_is_aligned_to_the_study_area(results):
    g = results.layers.grid
    assert (g.x0, g.y0, g.nrows, g.ncols, g.size) == pytest.approx((250000.0, 1660300.0, 3, 6, 100.0))


def test_rows_read_used_rejected(results):
    r = results.report
    assert (r.rows_read, r.rows_used, r.rows_rejected) == (34, 27, 7)
    assert r.reason_counts() == {
        "unparseable_coordinate": 1, "swapped_lat_lon": 1, "outside_study_area": 1, "dbm_out_of_range": 1,
        "missing_signal": 1, "future_timestamp": 1, "duplicate_row": 1,
    }
    # Line numbers count the header as line 1: the duplicate is line 29, the last bad row line 35.
    rej = results.report.rejected.set_index("source_row")["reason"].to_dict()
    assert rej == {29: "duplicate_row", 30: "outside_study_area", 31: "swapped_lat_lon", 32: "missing_signal",
                   33: "dbm_out_of_range", 34: "future_timestamp", 35: "unparseable_coordinate"}


def test_cell_classes(results):
    C, W, S, N, U = (int(CellClass.COVERED), int(CellClass.WEAK), int(CellClass.NO_SERVICE), int(CellClass.NO_4G),
                     int(CellClass.INSUFFICIENT))
    expected = np.array([
        [C, C, W, S, U, U],
        [C, C, C, S, N, N],
        [C, U, U, U, U, U],
    ])
    np.testing.assert_array_equal(results.classes, expected)


def test_medians_and_best_operator(results):
    best = results.best_p50
    assert best[0, 0] == -95 and best[1, 0] == -104 and best[2, 0] == -85
    assert best[0, 1] == -96 and best[1, 1] == -101 and best[0, 2] == -112
    assert best[1, 2] == -102  # MobiFone's median beats Viettel's −125
    assert best[1, 3] == -121 and best[0, 3] == -120
    assert math.isnan(best[1, 4])  # no 4G sample at all
    av = results.any_view.set_index("cell")
    assert av.loc[1 * 6 + 2, "best_operator"] == "MobiFone"
    assert av.loc[1 * 6 + 4, "rscp_dbm_p50"] == -76 and av.loc[1 * 6 + 4, "share_4g"] == 0
    ov = results.op_view.set_index(["cell", "operator"])
    assert ov.loc[(8, "Viettel"), "cell_class"] == int(CellClass.NO_SERVICE)
    assert (ov.loc[(3, "Viettel"), "n_4g"], ov.loc[(3, "Viettel"), "n_3g"]) == (1, 1)
    assert (ov.loc[(3, "Viettel"), "rsrp_dbm_p50"], ov.loc[(3, "Viettel"), "rscp_dbm_p50"]) == (-120, -110)
    assert ov.loc[(11, "Viettel"), "cell_class"] == int(CellClass.NO_4G)


def test_dead_zone(results):
    z = results.zones
    assert len(z) == 1
    zone = z.iloc[0]
    assert zone["area_km2"] == pytest.approx(0.02)
    assert zone["n_cells"] == 2
    assert zone["villages"] == "Thôn Hai"
    assert zone["households"] == pytest.approx(60 * 2 / 6)  # 2 of V2's 6 equal cells
    assert zone["n_samples"] == 4
    ops = results.zone_operators
    # 4G samples −118, −121, −120: lower median −120; the one 3G cell's median −110; both below usable.
    assert ops[["operator", "n_cells", "n_samples", "n_4g", "rsrp_dbm_p50", "rscp_dbm_p50"]].values.tolist() == [
        ["Viettel", 2, 4, 3, -120.0, -110.0]]
    # Viettel alone has no service in (1,2) too: its own dead zone has 3 cells; its no-4G zone 2.
    oz = results.operator_zones
    viettel = oz[oz["operator"] == "Viettel"].set_index("kind")
    assert viettel.loc["no_service", "n_cells"] == 3 and viettel.loc["no_4g", "n_cells"] == 2
    assert oz[oz["operator"] == "MobiFone"].empty


def test_no_4g_zone_shows_its_3g_level(results):
    z = results.no4g_zones
    assert len(z) == 1
    zone = z.iloc[0]
    assert (zone["zone_id"], zone["area_km2"], zone["n_cells"], zone["villages"]) == ("N4G001", pytest.approx(0.02), 2, "Thôn Ba")
    assert zone["households"] == pytest.approx(round(40 * 2 / 6, 1))  # rounded to 0.1 household
    ops = results.no4g_zone_operators
    assert ops[["operator", "n_cells", "n_samples", "n_4g", "share_4g", "rscp_dbm_p50"]].values.tolist() == [
        ["Viettel", 2, 4, 0, 0.0, -76.0]]
    assert np.isnan(ops["rsrp_dbm_p50"].iloc[0])


def test_village_shares_and_verdicts(results):
    v1, v2, v3 = (by_id(results, v) for v in ("V1", "V2", "V3"))
    assert v1["area_km2"] == pytest.approx(0.06)
    assert (v1["share_covered"], v1["share_weak"], v1["share_dead"], v1["share_unmeasured"]) == pytest.approx((5 / 6, 0, 0, 1 / 6))
    assert v1["evidence_share"] == pytest.approx(5 / 6) and v1["verdict_4g"] == "meets"
    assert (v2["share_covered"], v2["share_weak"], v2["share_dead"], v2["share_unmeasured"]) == pytest.approx((1 / 6, 1 / 6, 2 / 6, 2 / 6))
    assert v2["evidence_share"] == pytest.approx(4 / 6)
    assert v2["covered_of_measured"] == pytest.approx(0.25)
    assert v2["verdict_4g"] == "fails"
    assert v2["households_in_dead_zones"] == pytest.approx(20.0)
    assert (v3["share_no_4g"], v3["share_unmeasured"], v3["evidence_share"]) == pytest.approx((2 / 6, 4 / 6, 2 / 6))
    assert v3["verdict_4g"] == "insufficient evidence"
    assert [v1["n_samples"], v2["n_samples"], v3["n_samples"]] == [12, 10, 5]


def test_fibre_indicators(results):
    v1, v2, v3 = (by_id(results, v) for v in ("V1", "V2", "V3"))
    # The 100 m drop strip around x = 250120 is x 250020–250220: 180 m of V1's 200 m width, 20 m of V2's.
    assert v1["households_passed"] == pytest.approx(90.0)
    assert v1["fibre_share"] == pytest.approx(0.9) and bool(v1["meets_fibre_goal"])
    assert v2["households_passed"] == pytest.approx(6.0)
    assert v2["fibre_share"] == pytest.approx(0.1) and not bool(v2["meets_fibre_goal"])
    assert v3["households_passed"] == pytest.approx(0.0)
    assert [v1["dist_to_fibre_m"], v2["dist_to_fibre_m"], v3["dist_to_fibre_m"]] == pytest.approx([0, 80, 280])
    # Spur from the village's interior point (the box centre) to within 100 m of the route.
    assert [v1["spur_length_m"], v2["spur_length_m"], v3["spur_length_m"]] == pytest.approx([0, 80, 280])


def test_commune_and_district_scorecards(results):
    c = results.communes.iloc[0]
    assert c["name"] == "Xã Thử Nghiệm"
    assert c["centre_dist_to_fibre_m"] == pytest.approx(180.0)  # centre (250300, ·) to x = 250120
    assert not bool(c["communes_reached"])
    d = results.district.iloc[0]
    assert (d["n_villages"], d["villages_meeting_4g"], d["villages_failing_4g"], d["villages_insufficient_4g"]) == (3, 1, 1, 1)
    assert d["share_villages_4g"] == pytest.approx(1 / 3)
    assert d["status_villages_4g"] == "not met"
    assert (d["dead_zones"], d["dead_zone_area_km2"], d["households_in_dead_zones"]) == pytest.approx((1, 0.02, 20.0))
    assert (d["households"], d["households_passed"], d["fibre_share"]) == pytest.approx((200, 96.0, 0.48))
    assert d["status_fibre_households"] == "not met"
    assert (d["communes"], d["communes_reached"], d["status_fibre_communes"]) == (1, 0, "not met")
    assert d["share_area_measured"] == pytest.approx((0.05 + 0.04 + 0.02) / 0.18)
    assert d["evidence_share"] == pytest.approx((100 * 5 / 6 + 60 * 4 / 6 + 40 * 2 / 6) / 200)
    assert d["status_no_dead_zones"] == "not met"  # a dead zone is found, whatever the evidence
    assert d["villages_meeting_fibre_goal"] == 1
