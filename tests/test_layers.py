"""The vector layer readers refuse bad input with one message: file, row, column, value and fix.

Hand-written files in tests/data/bad_layers/ hold the cases seen in the field; the
rest are written here from the hand-worked district of conftest.py.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from pyproj import CRS

from conftest import X0, Y0, _box_lonlat, _feature, write_geojson
from covgap import layers
from covgap.config import load_config
from covgap.errors import InputError
from covgap.pipeline import load_layers

BAD = Path(__file__).resolve().parent / "data" / "bad_layers"
UTM = CRS.from_epsg(32649)
LEVELS = ["commune"]


def _village(i: int = 0, **props) -> dict:
    values = {"village_id": f"V{i + 1}", "name": f"Thôn {i + 1}", "commune": "Xã Thử Nghiệm", "households": 10}
    values.update(props)
    x = X0 + (i % 6) * 100
    return _feature(_box_lonlat(x, Y0 - 100, x + 100, Y0), **values)


def _refusal(path: Path, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        layers.read_villages(path, levels=LEVELS, crs=UTM, **kwargs)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


@pytest.mark.parametrize("name, shown", [
    ("households_infinity.geojson", "households = inf"),
    ("households_1e20.geojson", "households = 1e+20"),  # overflowed to a negative int64 before, fibre target "met"
])
def test_households_beyond_the_maximum_are_refused(name, shown):
    message = _refusal(BAD / name)
    assert f"row 1 (village_id=V1): {shown}, expected a whole number from 0 to 1,000,000" in message


@pytest.mark.parametrize("value, shown", [(-3, "-3"), ("many", "'many'"), (2.5, "2.5"), (True, "True"), (1_000_001, "1000001")])
def test_households_must_be_a_whole_number_in_range(tmp_path, value, shown):
    path = tmp_path / "villages.geojson"
    write_geojson(path, [_village(0, households=value)])
    assert f"households = {shown}, expected a whole number from 0 to 1,000,000" in _refusal(path)


def test_the_maximum_number_of_households_is_accepted(tmp_path):
    path = tmp_path / "villages.geojson"
    write_geojson(path, [_village(0, households=1_000_000), _village(1, households=0)])
    frame = layers.read_villages(path, levels=LEVELS, crs=UTM)
    assert frame["households"].tolist() == [1_000_000, 0]


def test_null_village_id_is_refused():
    assert _refusal(BAD / "null_village_id.geojson").endswith("row 1: village_id is empty; give every village a unique village_id")


def test_duplicate_village_ids_name_the_rows(tmp_path):
    path = tmp_path / "villages.geojson"
    write_geojson(path, [_village(0), _village(1, village_id="V1"), _village(2)])
    assert "village_id 'V1' is used by rows 1, 2; give every village a unique village_id" in _refusal(path)


def test_numeric_ids_with_a_null_stay_whole(tmp_path):
    """A numeric id column with one null is read as floats; 12 must not become '12.0'."""
    path = tmp_path / "villages.geojson"
    write_geojson(path, [_village(0, village_id=12), _village(1, village_id=None)])
    assert "row 2: village_id is empty" in _refusal(path)
    write_geojson(path, [_village(0, village_id=12), _village(1, village_id=13)])
    assert layers.read_villages(path, levels=LEVELS, crs=UTM)["village_id"].tolist() == ["12", "13"]


def test_zero_area_village_is_refused_with_the_point_hint():
    message = _refusal(BAD / "zero_area_village.geojson")
    assert "row 1 (village_id=V1): the village polygon has an area of 0.0" in message
    assert "give it as a Point" in message


def test_polygon_folded_onto_itself_is_refused_not_repaired_to_nothing(tmp_path):
    """make_valid turns a ring that goes out and back into a line; nothing polygonal is left of the village."""
    path = tmp_path / "villages.geojson"
    folded = {"type": "Polygon", "coordinates": [[[108.6, 15.0], [108.601, 15.001], [108.6, 15.0], [108.6, 15.0]]]}
    write_geojson(path, [_village(0), _feature(folded, village_id="V2", name="b", commune="Xã Thử Nghiệm", households=3)])
    assert "row 2 (village_id=V2): the village polygon has an area of 0 m²" in _refusal(path)


def test_commune_of_zero_area_is_refused(tmp_path):
    path = tmp_path / "communes.geojson"
    folded = {"type": "Polygon", "coordinates": [[[108.6, 15.0], [108.61, 15.01], [108.6, 15.0], [108.6, 15.0]]]}
    write_geojson(path, [_feature(folded, commune_id="X1", name="A")])
    with pytest.raises(InputError) as err:
        layers.read_communes(path, crs=UTM, level="commune")
    assert "row 1 (name=A): the commune polygon has an area of 0 m²" in str(err.value)


def test_empty_names_units_and_geometries_are_refused(tmp_path):
    path = tmp_path / "villages.geojson"
    empty = {"type": "Feature", "properties": {"village_id": "V3", "name": "c", "commune": "Xã Thử Nghiệm", "households": 1},
             "geometry": None}
    write_geojson(path, [_village(0, name="  "), _village(1, commune=None), empty])
    message = _refusal(path)
    assert "3 problems (1 × name empty, 1 × commune empty, 1 × empty geometry)" in message
    assert "row 1 (village_id=V1): column 'name' is empty" in message
    assert "row 2 (village_id=V2): column 'commune' is empty" in message
    assert "row 3 (village_id=V3): empty geometry" in message


def test_every_problem_is_counted_and_the_first_few_shown(tmp_path):
    path = tmp_path / "villages.geojson"
    write_geojson(path, [_village(i, households="many") for i in range(100)]
                  + [_village(100 + i, village_id=None) for i in range(11)])
    message = _refusal(path)
    assert "111 problems (11 × village_id empty, 100 × households not a number); first 4:" in message
    assert "row 101: village_id is empty" in message and "row 1 (village_id=V1): households = 'many'" in message
    assert len(re.findall(r"\(\d\) ", message)) == 4  # two of each kind, not 111


def test_population_and_fibre_subscribed_are_checked(tmp_path):
    path = tmp_path / "villages.geojson"
    write_geojson(path, [_village(0, population=float("inf"), fibre_subscribed=3),
                         _village(1, population=50, fibre_subscribed=11)])
    message = _refusal(path)
    assert "row 1 (village_id=V1): population = inf, expected a whole number from 0 to 10,000,000" in message
    assert "row 2 (village_id=V2): fibre_subscribed = 11 exceeds households = 10" in message


def test_projected_coordinates_in_a_geojson_without_crs_are_refused():
    message = _refusal(BAD / "projected_without_crs.geojson")
    assert "1 of the 1 features of the villages layer have coordinates that are not degrees (first: row 1, x 250000" in message
    assert "GeoJSON is WGS84 longitude/latitude" in message and "ogr2ogr" in message


def test_commune_with_a_null_name_is_refused():
    path = BAD / "null_commune_name.geojson"
    with pytest.raises(InputError) as err:
        layers.read_communes(path, crs=UTM, level="commune")
    assert str(err.value) == f"{path}: row 1: name is empty; give every commune a unique name"


def test_communes_duplicate_ids_and_half_given_centres(tmp_path):
    path = tmp_path / "communes.geojson"
    write_geojson(path, [
        _feature(_box_lonlat(X0, Y0 - 300, X0 + 300, Y0), commune_id="X1", name="A", centre_lon=None, centre_lat=15.0),
        _feature(_box_lonlat(X0 + 300, Y0 - 300, X0 + 600, Y0), commune_id="X1", name="B"),
    ])
    with pytest.raises(InputError) as err:
        layers.read_communes(path, crs=UTM, level="commune")
    message = str(err.value)
    assert "commune_id 'X1' is used by rows 1, 2" in message
    assert "row 1 (name=A): centre_lon/centre_lat = None/15.0, expected both as WGS84 degrees (or both empty)" in message


def test_fibre_routes_duplicate_ids_and_bad_status(tmp_path):
    path = tmp_path / "fibre.geojson"
    line = {"type": "LineString", "coordinates": [[108.6, 15.0], [108.61, 15.0]]}
    write_geojson(path, [_feature(line, route_id="F1", status="existing"), _feature(line, route_id="F1", status="dug"),
                         _feature(line, route_id=None)])
    with pytest.raises(InputError) as err:
        layers.read_fibre(path, crs=UTM)
    message = str(err.value)
    assert "2 problems (1 × duplicate route_id, 1 × status not existing or planned)" in message
    assert ("row 2 (route_id=F1): status = 'dug', expected existing or planned (or an OFDS status); say what it "
            'means in [inputs.fibre_status], e.g. "dug" = "existing"') in message
    write_geojson(path, [_feature(line, route_id="F1"), _feature(line, route_id=None)])
    assert layers.read_fibre(path, crs=UTM)["route_id"].tolist() == ["F1", "R002"]


def _shift_villages(project: Path, dx_m: float, only: str | None = None) -> None:
    path = project.parent / "villages.geojson"
    features = []
    for i, (vid, hh) in enumerate((("V1", 100), ("V2", 60), ("V3", 40))):
        x = X0 + 200 * i + (dx_m if only in (None, vid) else 0)
        features.append(_feature(_box_lonlat(x, Y0 - 300, x + 200, Y0), village_id=vid, name=f"Thôn {vid}",
                                 commune="Xã Thử Nghiệm", households=hh))
    write_geojson(path, features)


def test_villages_all_outside_the_study_area_name_both_files(hand_project):
    _shift_villages(hand_project, 50_000)
    with pytest.raises(InputError) as err:
        load_layers(load_config(hand_project))
    message = str(err.value)
    assert message.startswith(f"{hand_project.parent / 'villages.geojson'}: none of the 3 villages lies in the study area, "
                              f"the communes of {hand_project.parent / 'communes.geojson'}")
    assert "check that both layers are of the same district and carry their true CRS" in message


def test_one_village_outside_every_commune_is_named(hand_project):
    _shift_villages(hand_project, 5_000, only="V2")
    with pytest.raises(InputError) as err:
        load_layers(load_config(hand_project))
    assert "row 2 (village_id=V2): lies wholly outside the communes of" in str(err.value)


def test_geopackage_without_crs_is_refused(tmp_path):
    import geopandas as gpd
    import shapely

    path = tmp_path / "villages.gpkg"
    gpd.GeoDataFrame({"village_id": ["V1"], "name": ["a"], "commune": ["X"], "households": [3]},
                     geometry=[shapely.box(0, 0, 100, 100)], crs=None).to_file(path)
    assert _refusal(path).endswith("villages layer has no CRS (a Shapefile without .prj?); add one, e.g. with "
                                   "ogr2ogr -a_srs EPSG:4326")


def test_in_memory_layers_are_checked_like_files(hand_project):
    """A GeoDataFrame goes through the same column mapping and checks as a file; errors name it."""
    import geopandas as gpd
    import pandas as pd

    from covgap import pipeline as pl

    config = load_config(hand_project)
    villages = gpd.read_file(config.inputs.villages)
    with pytest.raises(InputError, match=r"^villages \(GeoDataFrame\): missing column\(s\) households"):
        pl.load_layers(config, villages=villages.drop(columns="households"))
    with pytest.raises(InputError, match=r"villages GeoDataFrame has no CRS; .*set_crs\('EPSG:4326'\)"):
        pl.load_layers(config, villages=villages.set_crs(None, allow_override=True))
    with pytest.raises(InputError, match=r"fibre routes layer is a pandas DataFrame without geometry; give a GeoDataFrame"):
        pl.load_layers(config, fibre=pd.DataFrame({"route_id": ["F1"]}))
    # A renamed column mapped in [inputs.village_columns] works the same from a frame as from a file.
    renamed = villages.rename(columns={"households": "so_ho"}).rename_geometry("geom")
    mapped = dataclasses.replace(config, inputs=dataclasses.replace(config.inputs, village_columns={"households": "so_ho"}))
    got = pl.load_layers(mapped, villages=renamed).villages
    want = pl.load_layers(config).villages
    assert got["households"].tolist() == want["households"].tolist()
    assert got.geometry.geom_equals(want.geometry).all()


def test_context_layers_are_clipped_to_the_study_area_and_labelled(hand_project, caplog):
    """Values by hand in conftest.add_context_layers."""
    from conftest import CONTEXT_PLACE, add_context_layers

    with caplog.at_level("WARNING"):
        lay = load_layers(load_config(add_context_layers(hand_project)))
    roads, rivers, places = (lay.context[k] for k in ("roads", "rivers", "places"))
    assert len(roads) == 1 and roads["label"].tolist() == ["Đường <b>ĐT</b> 623"]
    assert roads.geometry.iloc[0].length == pytest.approx(600.0, abs=0.01)
    assert "1 of 2 features left out of the roads context layer" in caplog.text
    assert rivers.geometry.iloc[0].area == pytest.approx(5000.0, rel=1e-4) and rivers["label"].tolist() == ["Sông Vệ"]
    assert places["label"].tolist() == [CONTEXT_PLACE]
    assert {p.name for p in lay.input_files} >= {"roads.geojson", "rivers.geojson", "places.geojson"}


def test_context_layer_problems_are_named(hand_project):
    from conftest import add_context_layers
    from covgap.errors import ConfigError

    config = add_context_layers(hand_project)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('label = "ten_duong"', 'label = "ten"'), encoding="utf-8")
    with pytest.raises(InputError, match=r"roads.geojson: no column 'ten' for the labels of this roads layer; columns found: "
                                         r"ten_duong; set label in its \[inputs\] context entry"):
        load_layers(load_config(config))
    config.write_text(text.replace('kind = "rivers"', 'kind = "river"'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[inputs\] context entry 2: kind = 'river' is not one of roads, rivers, places"):
        load_config(config)
    config.write_text(text.replace('kind = "places"', 'kind = "roads"'), encoding="utf-8")
    with pytest.raises(InputError, match=r"places.geojson: no feature of this roads layer has a LineString or "
                                         r"MultiLineString geometry \(found: Point\)"):
        load_layers(load_config(config))


def test_measurements_from_a_dataframe_are_read_like_the_csv(hand_project):
    """The hand CSV read with pandas and handed over as a DataFrame: the same 27 rows used, the same 7
    rejected for the same reasons, the same verdicts; the reports name it measurements-dataframe.csv."""
    import pandas as pd

    from covgap import pipeline as pl

    config = load_config(hand_project)
    frame = pd.read_csv(hand_project.parent / "measurements" / "hand.csv", dtype=str, keep_default_na=False)
    from_file = pl.run_pipeline(config, now_s=1_790_000_000)
    from_frame = pl.run_pipeline(config, now_s=1_790_000_000, measurements=frame)
    assert (from_frame.report.rows_read, from_frame.report.rows_used, from_frame.report.rows_rejected) == (34, 27, 7)
    assert from_frame.report.reason_counts() == from_file.report.reason_counts()
    assert from_frame.report.files["file"].tolist() == [pl.MEASUREMENT_FRAME_NAME] and from_frame.report.paths == []
    assert from_frame.report.rejected["source_row"].tolist() == from_file.report.rejected["source_row"].tolist()
    assert from_frame.villages["verdict_4g"].tolist() == from_file.villages["verdict_4g"].tolist()
    assert from_frame.stats.equals(from_file.stats)
    with pytest.raises(InputError, match="measurements must be a pandas DataFrame"):
        pl.run_pipeline(config, measurements=[1, 2])
