"""The faster geometry paths give what the plain shapely calls give (checked against them, and by hand)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import CRS

from covgap import deadzones, fibre, maps
from covgap.cellstats import CellClass
from covgap.grid import make_grid

UTM = CRS.from_epsg(32649)


def _routes() -> shapely.Geometry:
    lines = [shapely.LineString([(0, 0), (1000, 0), (1000, 800)]), shapely.LineString([(500, -300), (500, 600)]),
             shapely.LineString([(2500, 2500), (4000, 2600)])]
    return shapely.union_all(lines)


def test_passed_areas_equal_intersections_with_the_buffer_of_the_whole_network():
    """Per-block drop zones (routes found by an index, cut to the block's grown box) give the areas of the
    plain intersection with the buffer of the whole network, across block edges and for long routes."""
    routes = _routes()
    zone = shapely.buffer(routes, 200, quad_segs=16)
    lines = shapely.get_parts(routes)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-500, 4500, 400), rng.uniform(-500, 3000, 400)
    boxes = shapely.box(x, y, x + 100, y + 100)
    boxes[:5] = shapely.box(np.array([1550.0, 1590, 3150, 3190, 480]), -50, np.array([1650.0, 1690, 3250, 3290, 580]), 50)
    expected = shapely.area(shapely.intersection(boxes, zone))
    got = fibre.passed_areas(boxes, shapely.area(boxes), lines, 200)
    assert got == pytest.approx(expected, abs=1e-3)
    assert (got > 0).sum() > 50 and (got == 0).sum() > 50
    # by hand: a 100 m box centred on the first route's straight part lies wholly within 200 m of it;
    # one 250 m beyond the end of the last route (4000, 2600) has nothing within 200 m.
    one = np.array([shapely.box(200, -50, 300, 50), shapely.box(4250, 2550, 4350, 2650)])
    assert fibre.passed_areas(one, shapely.area(one), lines, 200) == pytest.approx([10_000, 0])
    assert fibre.passed_areas(one, shapely.area(one), lines[:0], 200).tolist() == [0, 0]
    # Every other block worked out by a forked child: the same values, exactly.
    np.testing.assert_array_equal(fibre.passed_areas_two_processes(boxes, shapely.area(boxes), lines, 200), got)


def test_distance_to_equals_shapely_distance():
    routes = _routes()
    geoms = np.array([shapely.Point(0, 300), shapely.Point(3000, 3000), shapely.box(1200, 100, 1300, 200),
                      shapely.Point(500, 0), shapely.Polygon(), None], dtype=object)
    got = fibre.distance_to(geoms, routes)
    assert got[:4] == pytest.approx(shapely.distance(geoms[:4], routes))
    assert got[0] == pytest.approx(300.0) and got[2] == pytest.approx(200.0) and got[3] == 0.0  # by hand
    assert np.isnan(got[4]) and np.isnan(got[5])


def test_needs_measurement_by_hand():
    # 3 × 3 cells of 100 m; the village is the 200 × 200 m square over the four top-left cells, and only the
    # top-left cell lacks evidence: a quarter of the village (100 × 100 m) needs measuring.
    grid = make_grid((0, 0, 300, 300), size=100, crs=UTM)
    village = shapely.box(0, 100, 200, 300)
    villages = gpd.GeoDataFrame({"village_id": ["a"], "name": ["A"], "commune": ["X"], "households": [8.0]},
                                geometry=[village], crs=UTM)

    def needs(classes: np.ndarray) -> gpd.GeoDataFrame:
        return deadzones.needs_measurement_areas(classes.astype(np.uint8), grid, villages, "commune")

    classes = np.full((3, 3), int(CellClass.COVERED))
    classes[0, 0] = int(CellClass.INSUFFICIENT)
    got = needs(classes)
    assert got["area_km2"].tolist() == [0.01]
    assert shapely.equals(got.geometry.iloc[0], shapely.box(0, 200, 100, 300))
    # every cell unmeasured: the village whole; none: nothing
    assert shapely.equals(needs(np.full((3, 3), int(CellClass.INSUFFICIENT))).geometry.iloc[0], village)
    assert needs(np.full((3, 3), int(CellClass.COVERED))).empty


def test_needs_measurement_equals_the_intersection_with_all_unmeasured_cells():
    grid = make_grid((0, 0, 1000, 1000), size=100, crs=UTM)
    rng = np.random.default_rng(5)
    classes = np.where(rng.random((10, 10)) < 0.6, int(CellClass.INSUFFICIENT), int(CellClass.COVERED)).astype(np.uint8)
    villages = gpd.GeoDataFrame({"village_id": ["a", "b", "c"], "name": ["A", "B", "C"], "commune": ["X"] * 3,
                                 "households": [10.0, 20.0, 30.0]},
                                geometry=[shapely.Point(330, 440).buffer(250), shapely.box(610, 50, 990, 390),
                                          shapely.box(20, 720, 180, 980)], crs=UTM)
    got = deadzones.needs_measurement_areas(classes, grid, villages, "commune")
    cells = np.flatnonzero(classes.ravel() == int(CellClass.INSUFFICIENT))
    unmeasured = shapely.union_all(grid.cell_boxes(cells))
    expected = shapely.area(shapely.intersection(villages.geometry.to_numpy(), unmeasured)) / 1e6
    by_id = dict(zip(got["village_id"], got["area_km2"]))
    for vid, area in zip(villages["village_id"], expected):
        assert by_id.get(vid, 0.0) == pytest.approx(area, abs=1e-6)


def test_a_village_wholly_unmeasured_is_sent_once_on_the_maps():
    villages = gpd.GeoDataFrame({"village_id": ["a", "b"]}, geometry=[shapely.box(0, 0, 100, 100),
                                                                    shapely.box(200, 0, 300, 100)], crs=UTM)
    needs = gpd.GeoDataFrame({"village_id": ["a", "b"]}, geometry=[shapely.box(0, 0, 100, 100),
                                                                 shapely.box(200, 0, 250, 100)], crs=UTM)
    assert maps._whole_villages(needs, villages).tolist() == [True, False]


def test_village_pieces_clipped_by_rectangles_equal_general_intersections():
    """Rectangle clipping of a village by its cells gives valid pieces of the same areas as the general
    intersection: a concave village with a hole, on and off the cell lines."""
    from covgap import villages

    rng = np.random.default_rng(11)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 40))
    radii = rng.uniform(150, 420, 40)
    outer = np.c_[500 + radii * np.cos(angles), 500 + radii * np.sin(angles)]
    village = shapely.Polygon(outer, holes=[[(480, 480), (540, 480), (540, 530), (480, 530)]])
    assert village.is_valid
    grid = make_grid((0, 0, 1000, 1000), size=100, crs=UTM)
    cells = grid.cells_in_bounds(village.bounds)
    boxes = grid.cell_boxes(cells)
    got = villages._clip_to_boxes(village, boxes)
    assert shapely.is_valid(got).all()
    np.testing.assert_allclose(shapely.area(got), shapely.area(shapely.intersection(boxes, village)), atol=1e-6)
    assert shapely.area(got).sum() == pytest.approx(village.area, rel=1e-12)


def test_count_of_cells_in_boxes_is_the_length_of_cells_in_bounds():
    """Grid.count_cells_in_bounds (vectorised, for the early layer side's choice) against the box's own cells."""
    grid = make_grid((500_000.0, 1_600_000.0, 503_000.0, 1_602_000.0), size=100.0, crs=UTM)
    rng = np.random.default_rng(7)
    x = rng.uniform(499_000, 504_000, (300, 2))
    y = rng.uniform(1_599_000, 1_603_000, (300, 2))
    boxes = np.column_stack([x.min(axis=1), y.min(axis=1), x.max(axis=1), y.max(axis=1)])
    boxes = np.vstack([boxes, [[500_100.0, 1_601_000.0, 500_100.0, 1_601_000.0],  # a point on an inner corner
                               [505_000.0, 1_600_000.0, 506_000.0, 1_601_000.0]]])  # wholly outside
    want = [len(grid.cells_in_bounds(tuple(b))) for b in boxes]
    np.testing.assert_array_equal(grid.count_cells_in_bounds(boxes), want)
    assert want[-1] == 0 and want[-2] == 1 and max(want) == grid.ncells
    assert grid.count_cells_in_bounds(np.array([[np.nan] * 4])).tolist() == [0]
