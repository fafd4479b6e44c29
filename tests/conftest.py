"""Shared fixtures: a hand-worked three-village district small enough to check by hand.

Geometry (EPSG:32649, metres; grid of 100 m cells from x0 = 250000, y0 = 1660300):

    one commune  "Xã Thử Nghiệm" = box(250000, 1660000, 250600, 1660300)   (6 × 3 cells)
    V1 "Thôn Một" = x 250000–250200, 100 households   cells (row, col) rows 0–2, cols 0–1
    V2 "Thôn Hai" = x 250200–250400,  60 households   cols 2–3
    V3 "Thôn Ba"  = x 250400–250600,  40 households   cols 4–5
    fibre: one existing line x = 250120 from y 1659900 to 1660400 (crosses the whole district)

The measurements (``HAND_ROWS``) put known dBm values at cell centres; the
expected figures are worked out in tests/test_hand_worked.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyproj import Transformer

CRS = "EPSG:32649"
X0, Y0, SIZE = 250000.0, 1660300.0, 100.0

TO_WGS84 = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)


def cell_centre_lonlat(row: int, col: int) -> tuple[float, float]:
    lon, lat = TO_WGS84.transform(X0 + (col + 0.5) * SIZE, Y0 - (row + 0.5) * SIZE)
    return round(lon, 8), round(lat, 8)


# (row, col, operator, technology, level dBm, timestamp)
HAND_ROWS = [
    # V1: five covered cells (medians −95, −104, −85, −96, −101) and one cell with a single sample.
    (0, 0, "Viettel", "LTE", -90, "2026-03-01T08:00:00+07:00"),
    (0, 0, "Viettel", "LTE", -95, "2026-03-01T08:01:00+07:00"),
    (1, 0, "Viettel", "LTE", -100, "2026-03-01T08:02:00+07:00"),
    (1, 0, "Viettel", "LTE", -104, "2026-03-01T08:03:00+07:00"),
    (2, 0, "Viettel", "LTE", -80, "2026-03-01T08:04:00+07:00"),
    (2, 0, "Viettel", "LTE", -85, "2026-03-01T08:05:00+07:00"),
    (2, 0, "Viettel", "LTE", -88, "2026-03-01T08:06:00+07:00"),
    (0, 1, "Viettel", "LTE", -92, "2026-03-01T08:07:00+07:00"),
    (0, 1, "Viettel", "LTE", -96, "2026-03-01T08:08:00+07:00"),
    (1, 1, "Viettel", "LTE", -99, "2026-03-01T08:09:00+07:00"),
    (1, 1, "Viettel", "LTE", -101, "2026-03-01T08:10:00+07:00"),
    (2, 1, "Viettel", "LTE", -70, "2026-03-01T08:11:00+07:00"),
    # V2: weak (0,2); no service (1,2) for Viettel but covered by MobiFone; no service (1,3); in (0,3) one
    # 4G sample at −120 and one 3G at −110: neither usable, so no service too.
    (0, 2, "Viettel", "LTE", -110, "2026-03-02T09:00:00+07:00"),
    (0, 2, "Viettel", "LTE", -112, "2026-03-02T09:01:00+07:00"),
    (1, 2, "Viettel", "LTE", -120, "2026-03-02T09:02:00+07:00"),
    (1, 2, "Viettel", "LTE", -125, "2026-03-02T09:03:00+07:00"),
    (1, 2, "MobiFone", "LTE", -100, "2026-03-02T09:04:00+07:00"),
    (1, 2, "MobiFone", "LTE", -102, "2026-03-02T09:05:00+07:00"),
    (1, 3, "Viettel", "LTE", -118, "2026-03-02T09:06:00+07:00"),
    (1, 3, "Viettel", "LTE", -121, "2026-03-02T09:07:00+07:00"),
    (0, 3, "Viettel", "LTE", -120, "2026-03-02T09:08:00+07:00"),
    (0, 3, "Viettel", "UMTS", -110, "2026-03-02T09:09:00+07:00"),
    # V3: a single sample, and two cells where the phone is on 3G at −75/−76 dBm: no 4G, but service.
    (0, 4, "Viettel", "LTE", -100, "2026-03-03T10:00:00+07:00"),
    (1, 4, "Viettel", "UMTS", -75, "2026-03-03T10:10:00+07:00"),
    (1, 4, "Viettel", "UMTS", -76, "2026-03-03T10:11:00+07:00"),
    (1, 5, "Viettel", "HSPA+", -75, "2026-03-03T10:12:00+07:00"),
    (1, 5, "Viettel", "HSPA+", -76, "2026-03-03T10:13:00+07:00"),
]


def hand_csv_lines() -> list[str]:
    """The generic CSV: the 27 good rows above and 7 bad ones, each bad for one reason."""
    lines = ["timestamp,lat,lon,operator,technology,rsrp_dbm"]
    for row, col, op, tech, dbm, ts in HAND_ROWS:
        lon, lat = cell_centre_lonlat(row, col)
        lines.append(f"{ts},{lat},{lon},{op},{tech},{dbm}")
    lon, lat = cell_centre_lonlat(1, 4)
    lines += [
        lines[1],  # duplicate_row: the first measurement again
        "2026-03-03T10:01:00+07:00,21.0285,105.8542,Viettel,LTE,-90",  # outside_study_area (Hà Nội)
        f"2026-03-03T10:02:00+07:00,{lon},{lat},Viettel,LTE,-90",  # swapped_lat_lon
        f"2026-03-03T10:03:00+07:00,{lat},{lon},Viettel,LTE,",  # missing_signal
        f"2026-03-03T10:04:00+07:00,{lat},{lon},Viettel,LTE,-30",  # dbm_out_of_range
        f"2099-01-01T00:00:00+07:00,{lat},{lon},Viettel,LTE,-90",  # future_timestamp
        f"2026-03-03T10:05:00+07:00,abc,{lon},Viettel,LTE,-90",  # unparseable_coordinate
    ]
    return lines


def _feature(geom: dict, **props) -> dict:
    return {"type": "Feature", "properties": props, "geometry": geom}


def _box_lonlat(x0: float, y0: float, x1: float, y1: float) -> dict:
    ring = [TO_WGS84.transform(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
    return {"type": "Polygon", "coordinates": [[[round(a, 9), round(b, 9)] for a, b in ring]]}


def write_geojson(path: Path, features: list[dict]) -> None:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False), encoding="utf-8")


@pytest.fixture
def hand_project(tmp_path: Path) -> Path:
    """A complete little project (inputs + covgap.toml) in a temporary folder; returns the toml path."""
    d = tmp_path / "hand"
    (d / "measurements").mkdir(parents=True)
    y0, y1 = Y0 - 300, Y0
    write_geojson(d / "communes.geojson", [_feature(_box_lonlat(X0, y0, X0 + 600, y1), commune_id="X1", name="Xã Thử Nghiệm")])
    write_geojson(d / "villages.geojson", [
        _feature(_box_lonlat(X0, y0, X0 + 200, y1), village_id="V1", name="Thôn Một", commune="Xã Thử Nghiệm", households=100),
        _feature(_box_lonlat(X0 + 200, y0, X0 + 400, y1), village_id="V2", name="Thôn Hai", commune="Xã Thử Nghiệm", households=60),
        _feature(_box_lonlat(X0 + 400, y0, X0 + 600, y1), village_id="V3", name="Thôn Ba", commune="Xã Thử Nghiệm", households=40),
    ])
    a = TO_WGS84.transform(250120.0, 1659900.0)
    b = TO_WGS84.transform(250120.0, 1660400.0)
    write_geojson(d / "fibre.geojson", [_feature({"type": "LineString", "coordinates": [list(a), list(b)]},
                                                 route_id="F1", operator="VNPT", status="existing", year=2024)])
    (d / "measurements" / "hand.csv").write_text("\n".join(hand_csv_lines()) + "\n", encoding="utf-8")
    (d / "covgap.toml").write_text(
        """
[study]
name = "Huyện Thử"
crs = "EPSG:32649"

[inputs]
villages = "villages.geojson"
communes = { commune = "communes.geojson" }
fibre = "fibre.geojson"
measurements = ["measurements"]

[signal]
min_samples = 2

[dead_zones]
min_area_km2 = 0.02

[fibre]
drop_distance_m = 100
centre_reach_m = 100

[report]
level = "commune"

[output]
dir = "out"
maps_dir = "maps"
""",
        encoding="utf-8",
    )
    return d / "covgap.toml"


@pytest.fixture(autouse=True)
def compiled_parser_as_before(monkeypatch):
    """Each test starts with the compiled parser loaded or not as the test before found it: a process that has
    loaded it reads every file with it (covgap.ingest._compiled), so a test that loads it (covgap watch's
    prepare, tests/test_fastparse.py) must not change which reader the tests after it exercise."""
    from covgap import fastparse

    monkeypatch.setattr(fastparse, "_module", fastparse._module)


@pytest.fixture
def no_maps(monkeypatch):
    """Skip drawing the HTML maps (tested in their own modules); returns the results each draw was asked for."""
    from covgap import cli

    calls = []
    monkeypatch.setattr(cli, "_write_maps", lambda results, config, **_: calls.append(results) or [])
    return calls


#: The place name given to the hand project's context layer: markup that must stay text.
CONTEXT_PLACE = '<img src=x onerror=alert(1)> Chợ "Mới" & Bến'


def add_context_layers(config_path: Path) -> Path:
    """Give the hand project roads, rivers and places context layers ([inputs] context); returns the toml.

    By hand: the road runs along y = Y0 − 150 from 1 km west to 2 km east of the commune (x X0 … X0 + 600),
    so 600 m of it lie inside; a point in the roads file is left out. The river is the box x X0 + 500 … + 700,
    y Y0 − 350 … − 250, of which 100 m × 50 m = 5,000 m² lie inside. Of two places, one lies inside."""
    d = config_path.parent

    def lonlat(x, y):
        return [round(v, 9) for v in TO_WGS84.transform(x, y)]
    write_geojson(d / "roads.geojson", [
        _feature({"type": "LineString", "coordinates": [lonlat(X0 - 1000, Y0 - 150), lonlat(X0 + 2000, Y0 - 150)]},
                 ten_duong="Đường <b>ĐT</b> 623"),
        _feature({"type": "Point", "coordinates": lonlat(X0 + 100, Y0 - 100)}, ten_duong="not a road"),
    ])
    write_geojson(d / "rivers.geojson", [_feature(_box_lonlat(X0 + 500, Y0 - 350, X0 + 700, Y0 - 250), name="Sông Vệ")])
    write_geojson(d / "places.geojson", [
        _feature({"type": "Point", "coordinates": lonlat(X0 + 300, Y0 - 60)}, name=CONTEXT_PLACE),
        _feature({"type": "Point", "coordinates": lonlat(X0 + 5000, Y0 - 60)}, name="far away"),
    ])
    text = config_path.read_text(encoding="utf-8").replace(
        'measurements = ["measurements"]\n',
        'measurements = ["measurements"]\n'
        'context = [{ path = "roads.geojson", kind = "roads", label = "ten_duong" },\n'
        '           { path = "rivers.geojson", kind = "rivers", label = "name" },\n'
        '           { path = "places.geojson", kind = "places", label = "name" }]\n')
    config_path.write_text(text, encoding="utf-8")
    return config_path
