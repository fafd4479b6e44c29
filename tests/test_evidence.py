"""No claim without evidence (DESIGN.md §3.3, §3.7): cell classes and evidence shares by hand.

Each case is small enough to work out on paper; the expected values are written out
in the test, not computed by the code under test.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import CRS

from covgap import cellstats, scorecard, villages as villages_mod
from covgap.cellstats import CellClass
from covgap.grid import Grid

GRID = Grid(x0=0.0, y0=1000.0, size=100.0, nrows=1, ncols=10, crs=CRS.from_epsg(32649))
LEVELS = dict(covered_dbm=-105.0, dead_dbm=-115.0, usable_3g_dbm=-100.0, usable_2g_dbm=-100.0, min_samples=5)


def _rows(cell: int, tech: str, levels: list[float], operator: str = "Viettel") -> pd.DataFrame:
    x, y = GRID.cell_centres(np.array([cell]))
    return pd.DataFrame({"x": float(x[0]), "y": float(y[0]), "signal_dbm": levels, "technology": tech,
                         "operator": operator, "time_s": np.arange(len(levels), dtype=float)})


def _classes(*parts: pd.DataFrame) -> dict[int, int]:
    stats = cellstats.aggregate_to_cells(pd.concat(parts, ignore_index=True), GRID)
    view, _ = cellstats.operator_view(stats, **LEVELS)
    return dict(zip(view["cell"], view["cell_class"]))


def test_strong_3g_is_no_4g_not_no_service():
    got = _classes(_rows(0, "3G", [-75] * 5))
    assert got == {0: int(CellClass.NO_4G)}


def test_4g_at_minus_120_and_3g_at_minus_110_is_no_service():
    # 3 LTE samples at −120 (majority, below the usable −115) and 2 3G samples at −110 (below −100).
    got = _classes(_rows(0, "4G", [-120] * 3), _rows(0, "3G", [-110] * 2))
    assert got == {0: int(CellClass.NO_SERVICE)}


def test_each_class_at_its_boundary():
    got = _classes(
        _rows(0, "4G", [-105] * 5),                      # median −105: covered (at the threshold)
        _rows(1, "4G", [-106] * 5),                      # weak 4G
        _rows(2, "4G", [-115] * 5),                      # −115 is still usable: weak 4G
        _rows(3, "4G", [-116] * 5),                      # 4G below usable, nothing else: no service
        _rows(4, "4G", [-116] * 3), _rows(4, "2G", [-100] * 2),   # 2G at −100 usable: no 4G
        _rows(5, "3G", [-101] * 5),                      # 3G just below usable: no service
        _rows(6, "3G", [-75] * 4),                       # four samples: insufficient evidence
        _rows(7, "4G", [-90] * 2), _rows(7, "3G", [-110] * 3),    # 4G in 2 of 5, usable: weak (intermittent) 4G
        _rows(8, "4G", [-90] * 2), _rows(8, "3G", [-80] * 3),     # mostly on usable 3G: no 4G
        _rows(9, "4G", [-90] * 3), _rows(9, "none", [np.nan] * 2),  # "no service" logged 2 of 5: 4G decides
    )
    C, W, N, S, U = (int(c) for c in (CellClass.COVERED, CellClass.WEAK, CellClass.NO_4G, CellClass.NO_SERVICE,
                                      CellClass.INSUFFICIENT))
    assert got == {0: C, 1: W, 2: W, 3: S, 4: N, 5: S, 6: U, 7: W, 8: N, 9: C}


def test_no_service_logged_by_the_app_makes_a_dead_cell():
    got = _classes(_rows(0, "none", [np.nan] * 4), _rows(0, "4G", [-100]))
    assert got == {0: int(CellClass.NO_SERVICE)}


def test_best_operator_ranks_no_4g_above_no_service():
    stats = cellstats.aggregate_to_cells(pd.concat([_rows(0, "3G", [-80] * 5, "MobiFone"),
                                                    _rows(0, "4G", [-125] * 5, "Viettel")]), GRID)
    view, _ = cellstats.operator_view(stats, **LEVELS)
    best = cellstats.best_operator_view(view).iloc[0]
    assert (best["cell_class"], best["best_operator"], best["rscp_dbm_p50"]) == (int(CellClass.NO_4G), "MobiFone", -80)


# --------------------------------------------------------------------------- evidence where people live
def _one_village_pieces(weights: list[float]) -> gpd.GeoDataFrame:
    """One village over the 10 cells of GRID, households spread by ``weights`` (shares sum to 1)."""
    w = np.asarray(weights, dtype=float)
    cells = np.arange(len(w))
    return gpd.GeoDataFrame({"village": 0, "cell": cells, "area_m2": 10_000.0, "weight_share": w / w.sum()},
                            geometry=GRID.cell_boxes(cells), crs=GRID.crs)


def _verdict(measured_cells: list[int], weights: list[float]) -> pd.Series:
    villages = gpd.GeoDataFrame({"village_id": ["V"], "name": ["V"], "households": [100]},
                                geometry=[shapely.box(0, 900, 1000, 1000)], crs=GRID.crs)
    classes = np.full((1, 10), int(CellClass.INSUFFICIENT))
    classes[0, measured_cells] = int(CellClass.COVERED)
    out = villages_mod.compute_signal_indicators(villages, _one_village_pieces(weights), classes, pd.DataFrame(),
                                                 np.zeros(10, dtype=np.int32), GRID, min_evidence_share=0.5,
                                                 min_covered_share=0.95)
    return out.iloc[0]


def test_village_with_30_percent_of_households_measured_is_insufficient():
    # Households: 10 in each cell. Cells 0–2 measured (all covered) = 30 of 100 households.
    v = _verdict([0, 1, 2], [10] * 10)
    assert v["evidence_share"] == pytest.approx(0.30)
    assert v["verdict_4g"] == "insufficient evidence"


def test_village_with_60_percent_of_households_measured_meets():
    v = _verdict([0, 1, 2, 3, 4, 5], [10] * 10)
    assert v["evidence_share"] == pytest.approx(0.60) and v["covered_of_measured"] == pytest.approx(1.0)
    assert v["verdict_4g"] == "meets"


def test_evidence_counts_households_not_area():
    # One measured cell of ten (10% of the area) holds 55 of 100 households: enough evidence.
    v = _verdict([0], [55] + [5] * 9)
    assert v["share_measured"] == pytest.approx(0.10)
    assert v["evidence_share"] == pytest.approx(0.55)
    assert v["verdict_4g"] == "meets"


# --------------------------------------------------------------------------- scorecard statuses
def _villages(evidence: list[float], households: list[int], verdicts: list[str]) -> pd.DataFrame:
    n = len(evidence)
    return pd.DataFrame({
        "commune": "C", "verdict_4g": verdicts, "households": households, "evidence_share": evidence,
        "households_passed": [0.0] * n, "area_km2": [1.0] * n, "share_measured": evidence,
        "households_in_dead_zones": [0.0] * n, "meets_fibre_goal": [False] * n,
    })


def _scorecard(v: pd.DataFrame, zones: gpd.GeoDataFrame | None = None) -> pd.Series:
    communes = gpd.GeoDataFrame({"commune_id": ["C1"], "name": ["C"], "centre_reached": [True],
                                 "centre_dist_to_fibre_m": [0.0]}, geometry=[shapely.box(0, 0, 1000, 1000)],
                                crs=GRID.crs)
    zones = zones if zones is not None else gpd.GeoDataFrame({"area_km2": []}, geometry=[], crs=GRID.crs)
    per_commune, district = scorecard.compute_scorecards(v, zones, communes, level="commune", goal_share=0.8,
                                                         min_evidence_share=0.8, study_name="D")
    assert per_commune.iloc[0]["status_no_dead_zones"] == district.iloc[0]["status_no_dead_zones"]
    return district.iloc[0]


def test_commune_with_no_samples_has_insufficient_evidence_of_no_dead_zones():
    d = _scorecard(_villages([0.0, 0.0], [50, 50], ["insufficient evidence"] * 2))
    assert d["evidence_share"] == 0.0
    assert d["status_no_dead_zones"] == "insufficient evidence"
    assert d["status_villages_4g"] == "insufficient evidence"


def test_no_dead_zones_met_only_with_80_percent_of_households_measured():
    # (100·0.9 + 300·0.7) / 400 = 0.75 < 0.8: insufficient; (100·0.9 + 300·0.8) / 400 = 0.825: met.
    low = _scorecard(_villages([0.9, 0.7], [100, 300], ["meets", "meets"]))
    assert low["evidence_share"] == pytest.approx(0.75) and low["status_no_dead_zones"] == "insufficient evidence"
    high = _scorecard(_villages([0.9, 0.8], [100, 300], ["meets", "meets"]))
    assert high["evidence_share"] == pytest.approx(0.825) and high["status_no_dead_zones"] == "met"


def test_a_found_dead_zone_fails_the_target_whatever_the_evidence():
    zones = gpd.GeoDataFrame({"area_km2": [0.05]}, geometry=[shapely.box(0, 0, 250, 200)], crs=GRID.crs)
    d = _scorecard(_villages([0.1, 0.1], [100, 300], ["fails", "insufficient evidence"]), zones)
    assert d["status_no_dead_zones"] == "not met" and d["dead_zones"] == 1


def test_every_scorecard_line_states_its_evidence():
    d = pd.DataFrame([_scorecard(_villages([0.9, 0.7], [100, 300], ["meets", "meets"]))])
    for lang in ("en", "vi"):
        long = scorecard.scorecard_long(d, goal_share=0.8, lang=lang)
        assert long["evidence"].str.len().min() > 0
        signal = long[long["target"].isin(["villages_4g", "no_dead_zones"])]
        assert signal["evidence_share"].tolist() == pytest.approx([0.75, 0.75])
        assert all("75%" in e for e in signal["evidence"])
    assert scorecard.scorecard_long(d, goal_share=0.9, lang="en").set_index("target").loc[
        "fibre_households", "label"] == "fibre passes > 90% of households"


# --------------------------------------------------------------------------- no measurements yet
def test_a_run_without_measurements_gives_the_fibre_outputs(hand_project, tmp_path):
    from click.testing import CliRunner

    from covgap.cli import main

    runner = CliRunner()
    full = runner.invoke(main, ["run", "--config", str(hand_project), "--out", str(tmp_path / "full"),
                                "--maps", str(tmp_path / "full_maps")])
    assert full.exit_code == 0, full.output
    (hand_project.parent / "measurements" / "hand.csv").unlink()  # an empty measurement folder
    none = runner.invoke(main, ["run", "--config", str(hand_project), "--out", str(tmp_path / "none"),
                                "--maps", str(tmp_path / "none_maps")])
    assert none.exit_code == 0, none.output
    assert "No measurements yet" in none.output
    cols = ["households", "households_passed", "fibre_share", "status_fibre_households", "communes",
            "communes_reached", "status_fibre_communes"]
    a = pd.read_csv(tmp_path / "full" / "scorecard_district_figures.csv")[cols]
    b = pd.read_csv(tmp_path / "none" / "scorecard_district_figures.csv")
    pd.testing.assert_frame_equal(a, b[cols])
    assert (b["status_villages_4g"].iloc[0], b["status_no_dead_zones"].iloc[0]) == ("insufficient evidence",) * 2
    assert b["evidence_share"].iloc[0] == 0
    v_full = pd.read_csv(tmp_path / "full" / "scorecard_villages.csv")
    v_none = pd.read_csv(tmp_path / "none" / "scorecard_villages.csv")
    pd.testing.assert_frame_equal(v_full[["village_id", "households_passed", "fibre_share", "meets_fibre_goal"]],
                                  v_none[["village_id", "households_passed", "fibre_share", "meets_fibre_goal"]])
    assert (tmp_path / "none_maps" / "index.html").is_file()
    # The operator owning the fibre route (VNPT in the layer, VNPT-VinaPhone in covgap's names) gets its
    # package with the fibre gaps, although nobody measured it; the measured operators get theirs too.
    assert sorted(p.name for p in (tmp_path / "full" / "partners").glob("*.zip")) == [
        "MobiFone.zip", "VNPT-VinaPhone.zip", "Viettel.zip"]
    assert sorted(p.name for p in (tmp_path / "none" / "partners").glob("*.zip")) == ["VNPT-VinaPhone.zip"]
    import pyogrio

    vnpt = tmp_path / "none" / "partners" / "VNPT-VinaPhone"
    assert len(pyogrio.read_dataframe(vnpt / "villages_below_fibre_goal.shp")) == 2
    assert len(pyogrio.read_dataframe(vnpt / "dead_zones.shp")) == 0
