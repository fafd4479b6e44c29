"""Real layers in without editing files: column and value mappings, OFDS spans, households from
population, look-alike unit names, every problem counted, fibre clipped for display only.

All on the hand-worked district of conftest.py (three villages of 200 m × 300 m in one commune).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from pyproj import CRS

from conftest import TO_WGS84, X0, Y0, _box_lonlat, _feature, write_geojson
from covgap import layers
from covgap.config import load_config
from covgap.errors import ConfigError, InputError
from covgap.pipeline import load_layers, run_pipeline

DATA = Path(__file__).resolve().parent / "data"
UTM = CRS.from_epsg(32649)


def _villages(path: Path, rows: list[dict]) -> None:
    """Villages side by side, 100 m wide, in the hand-worked commune."""
    write_geojson(path, [_feature(_box_lonlat(X0 + 100 * i, Y0 - 300, X0 + 100 * (i + 1), Y0), **props)
                         for i, props in enumerate(rows)])


def _line(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"type": "LineString", "coordinates": [list(TO_WGS84.transform(x0, y0)), list(TO_WGS84.transform(x1, y1))]}


def _toml(project: Path, extra: str) -> Path:
    """The hand project's covgap.toml with ``extra`` keys added to [inputs] (and sections after it)."""
    text = project.read_text(encoding="utf-8").replace('measurements = ["measurements"]\n',
                                                       'measurements = ["measurements"]\n' + extra + "\n", 1)
    project.write_text(text, encoding="utf-8")
    return project


# --- 1. column and value mappings -------------------------------------------------------------------

def test_village_columns_read_a_layer_of_another_schema(hand_project):
    folder = hand_project.parent
    _villages(folder / "villages.geojson", [
        {"MA_THON": "T1", "TEN_THON": "Thôn Một", "TEN_XA": "Xã Thử Nghiệm", "SO_HO": 100, "name": "ignored"},
        {"MA_THON": "T2", "TEN_THON": "Thôn Hai", "TEN_XA": "Xã Thử Nghiệm", "SO_HO": 60, "name": "ignored"},
    ])
    write_geojson(folder / "communes.geojson", [
        _feature(_box_lonlat(X0, Y0 - 300, X0 + 600, Y0), MA_XA="X1", TEN="Xã Thử Nghiệm", KINH_DO=108.6, VI_DO=15.0)])
    config = load_config(_toml(hand_project, """
[inputs.village_columns]
village_id = "MA_THON"
name = "TEN_THON"
households = "so_ho"          # case does not matter
commune = "TEN_XA"

[inputs.commune_columns]
name = "TEN"
commune_id = "MA_XA"

[inputs.commune_columns.commune]
centre_lon = "KINH_DO"
centre_lat = "VI_DO"
"""))
    result = load_layers(config)
    v = result.villages
    assert v["village_id"].tolist() == ["T1", "T2"] and v["name"].tolist() == ["Thôn Một", "Thôn Hai"]
    assert v["households"].tolist() == [100, 60] and set(v["commune"]) == {"Xã Thử Nghiệm"}
    assert result.communes["commune_id"].tolist() == ["X1"]
    assert result.communes["centre_source"].tolist() == ["given"]


def test_a_mapped_column_the_layer_lacks_names_the_setting(tmp_path):
    path = tmp_path / "villages.geojson"
    _villages(path, [{"MA_THON": "T1", "TEN_THON": "A", "commune": "X", "SO_HO": 1}])
    with pytest.raises(InputError) as err:
        layers.read_villages(path, levels=["commune"], crs=UTM, columns={"village_id": "MA_THON", "name": "TEN_THON",
                                                                           "households": "SO_H"})
    assert str(err.value) == (f"{path}: [inputs.village_columns] households = 'SO_H': the layer has no column 'SO_H' "
                              "(did you mean 'SO_HO'?); columns found: MA_THON, TEN_THON, commune, SO_HO")


def test_mapping_tables_are_checked_when_the_config_is_read(tmp_path):
    path = tmp_path / "covgap.toml"
    path.write_text('[inputs]\ncommunes = { commune = "c.geojson" }\n'
                    '[inputs.village_columns]\nhousehold = "SO_HO"\n'
                    '[inputs.fibre_status]\n"đang khai thác" = "operating"\n'
                    '[inputs.fibre_columns]\nstatuss = "TT"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "[inputs.village_columns] has unknown key 'household' (did you mean 'households'?)" in message
    assert ("[inputs] fibre_status = {'đang khai thác': 'operating'} is not valid ('đang khai thác' → 'operating', "
            "not one of existing, planned, dropped): expected a table of 'value' = 'existing', 'planned' or 'dropped'") in message
    assert "unknown key 'statuss' in [inputs.fibre_columns] (did you mean 'status'?)" in message


def test_commune_columns_are_checked_when_the_config_is_read(tmp_path):
    path = tmp_path / "covgap.toml"
    path.write_text('[inputs]\ncommunes = { commune = "c.geojson" }\n'
                    '[inputs.commune_columns]\nten = "TEN"\n[inputs.commune_columns.xa_2025]\nname = "TEN"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "[inputs] commune_columns = {'ten': 'TEN', 'xa_2025': {'name': 'TEN'}} is not valid (unknown key 'ten'; " \
           "known: commune_id, name, centre_lon, centre_lat, or a level key holding a table of them)" in message
    assert "[inputs.commune_columns.xa_2025] names a level that is not a key of [inputs] communes (commune)" in message


def test_fibre_columns_and_status_values_of_a_national_layer(tmp_path, caplog):
    path = tmp_path / "fibre.geojson"
    rows = [("đang khai thác", 2015), ("Đang khai thác", 2016), ("kế hoạch", 2027), ("đã dỡ bỏ", 2001)]
    write_geojson(path, [_feature(_line(X0, Y0, X0 + 100, Y0), MA_TUYEN=f"T{i}", DON_VI="VNPT", TRANG_THAI=s, NAM=y)
                         for i, (s, y) in enumerate(rows)])
    with caplog.at_level(logging.INFO, logger="covgap"):
        fibre = layers.read_fibre(path, crs=UTM, columns={"route_id": "MA_TUYEN", "operator": "DON_VI",
                                                          "status": "TRANG_THAI", "year": "NAM"},
                                  status_values={"đang khai thác": "existing", "kế hoạch": "planned", "đã dỡ bỏ": "dropped"})
    assert fibre["route_id"].tolist() == ["T0", "T1", "T2"]
    assert fibre["status"].tolist() == ["existing", "existing", "planned"]
    assert fibre["operator"].tolist() == ["VNPT"] * 3 and fibre["year"].tolist() == [2015, 2016, 2027]
    assert "1 of 4 fibre routes left out as not in service (1 đã dỡ bỏ)" in caplog.text


# --- 2. Open Fibre Data Standard --------------------------------------------------------------------

def test_ofds_spans_are_read_with_their_real_status_values(caplog):
    with caplog.at_level(logging.INFO, logger="covgap"):
        fibre = layers.read_fibre(DATA / "ofds" / "spans.geojson", crs=UTM)
    # operational → existing; proposed, planned, underConstruction → planned; decommissioned, inactive → dropped
    assert fibre["route_id"].tolist() == ["s1", "s2", "s3", "s4"]
    assert fibre["status"].tolist() == ["existing", "planned", "planned", "planned"]
    # the operator: first network provider, else the transmission medium owner, else the network's publisher
    assert fibre["operator"].tolist() == ["Viettel", "VNPT", "VNPT", "VNPT"]
    assert fibre["year"].iloc[0] == 2019 and fibre["year"].iloc[3] == 2027 and fibre["year"].isna().sum() == 2
    assert "spans.geojson: 2 of 6 fibre routes left out as not in service (1 decommissioned, 1 inactive)" in caplog.text
    assert "read as Open Fibre Data Standard spans: 4 routes (3 planned, 1 existing)" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_ofds_network_runs_without_any_mapping(hand_project):
    (hand_project.parent / "fibre.geojson").write_bytes((DATA / "ofds" / "spans.geojson").read_bytes())
    results = run_pipeline(load_config(hand_project))
    assert results.layers.fibre["status"].value_counts().to_dict() == {"planned": 3, "existing": 1}
    assert "Viettel" in results.partner_operators


# --- 3. households from population ------------------------------------------------------------------

def test_households_from_population_with_the_default_figure(tmp_path, caplog):
    path = tmp_path / "villages.geojson"
    _villages(path, [{"village_id": "V1", "name": "A", "commune": "X", "population": 340},
                     {"village_id": "V2", "name": "B", "commune": "X", "population": 1},
                     {"village_id": "V3", "name": "C", "commune": "X", "population": 0}])
    with caplog.at_level(logging.INFO, logger="covgap"):
        v = layers.read_villages(path, levels=["commune"], crs=UTM)
    # 340 / 3.4 = 100; 1 person is still one household; nobody, none
    assert v["households"].tolist() == [100, 1, 0]
    assert set(v["source_of_households"]) == {"population ÷ 3.4 ([inputs] persons_per_household)"}
    assert "households derived from population for 3 villages (0 with the unit table's persons per household, " \
           "3 with persons_per_household = 3.4)" in caplog.text


def test_households_from_population_with_a_table_per_unit(tmp_path):
    path = tmp_path / "villages.geojson"
    _villages(path, [{"village_id": "V1", "name": "A", "commune": "Mộ Ðức", "population": 300},
                     {"village_id": "V2", "name": "B", "commune": "Nghĩa Kỳ", "population": 300}])
    table = tmp_path / "pph.csv"
    table.write_text("commune,households_2019,population_2019\nMộ Đức,100,400\nMộ Đức,100,200\nNghĩa Hòa,1,3\n",
                     encoding="utf-8")
    level, figures = layers.read_persons_per_household_table(table, ["commune"])
    assert level == "commune" and figures == {"Mộ Đức": 3.0, "Nghĩa Hòa": 3.0}  # 600 persons / 200 households
    v = layers.read_villages(path, levels=["commune"], crs=UTM, persons_per_household=4.0,
                             unit_persons_per_household=(level, figures))
    assert v["households"].tolist() == [100, 75]  # the table's 3.0 (look-alike Ð matched), else 4.0
    assert v["source_of_households"].tolist() == ["population ÷ 3 (table, commune Mộ Ðức)",
                                               "population ÷ 4 ([inputs] persons_per_household)"]


def test_a_population_only_layer_runs_and_says_so_in_the_outputs(hand_project):
    folder = hand_project.parent
    _villages(folder / "villages.geojson", [
        {"village_id": "V1", "name": "Thôn Một", "commune": "Xã Thử Nghiệm", "population": 340},
        {"village_id": "V2", "name": "Thôn Hai", "commune": "Xã Thử Nghiệm", "population": 204}])
    results = run_pipeline(load_config(_toml(hand_project, "persons_per_household = 3.4")))
    assert results.villages["households"].tolist() == [100, 60]
    assert results.villages["source_of_households"].str.startswith("population ÷ 3.4").all()
    from covgap import outputs

    table = outputs.village_table(results)  # scorecard_villages.csv and the GeoPackage's villages layer
    assert table["source_of_households"].tolist() == ["population ÷ 3.4 ([inputs] persons_per_household)"] * 2


def test_a_population_only_layer_with_a_bad_population_counts_it(tmp_path):
    path = tmp_path / "villages.geojson"
    _villages(path, [{"village_id": "V1", "name": "A", "commune": "X", "population": None},
                     {"village_id": "V2", "name": "B", "commune": "X", "population": -5}])
    with pytest.raises(InputError) as err:
        layers.read_villages(path, levels=["commune"], crs=UTM)
    assert "2 problems (1 × population missing, 1 × population negative)" in str(err.value)


# --- 4. names that look alike -----------------------------------------------------------------------

def _commune_named(hand_project: Path, commune: str, village_unit: str) -> None:
    folder = hand_project.parent
    write_geojson(folder / "communes.geojson", [_feature(_box_lonlat(X0, Y0 - 300, X0 + 600, Y0), commune_id="X1", name=commune)])
    _villages(folder / "villages.geojson", [{"village_id": f"V{i}", "name": f"Thôn {i}", "commune": village_unit, "households": 10}
                                            for i in range(1, 4)])


def test_a_look_alike_letter_is_accepted_with_a_warning(hand_project, caplog):
    _commune_named(hand_project, "Mộ Đức", "Mộ \u00d0ức")  # Ð U+00D0 (eth) where the commune layer has Đ U+0110
    with caplog.at_level(logging.WARNING, logger="covgap"):
        result = load_layers(load_config(hand_project))
    assert set(result.villages["commune"]) == {"Mộ Đức"}
    assert ("column 'commune' spells 'Mộ Ðức' (3 villages) like the names of communes.geojson but with other "
            "characters ('Mộ Ðức' → 'Mộ Đức': 'Ð' U+00D0 for 'Đ' U+0110); taken as those names") in caplog.text


def test_old_and_new_tone_placement_are_the_same_name(hand_project):
    _commune_named(hand_project, "Nghĩa Hòa", "Nghĩa Hoà")
    assert set(load_layers(load_config(hand_project)).villages["commune"]) == {"Nghĩa Hòa"}


def test_a_name_that_differs_in_accents_is_refused_with_the_closest_name(hand_project):
    _commune_named(hand_project, "Nghĩa Kỳ", "Nghia Ky")
    with pytest.raises(InputError) as err:
        load_layers(load_config(hand_project))
    assert ("column 'commune' names 'Nghia Ky' (3 villages), which is not in communes.geojson: did you mean 'Nghĩa Kỳ'? "
            "(the names differ only in accents or case") in str(err.value)
    _commune_named(hand_project, "Nghĩa Kỳ", "Nghĩa Kỷ")  # another tone: another name
    with pytest.raises(InputError, match="names 'Nghĩa Kỷ' .*did you mean 'Nghĩa Kỳ'\\? \\(the names differ only in accents"):
        load_layers(load_config(hand_project))


def test_nfc_and_nfd_spellings_match():
    import unicodedata

    import pandas as pd

    nfd = unicodedata.normalize("NFD", "Mộ Đức")
    matched, lookalikes, unknown = layers.match_unit_names(pd.Series([nfd]), ["Mộ Đức"])
    assert matched.tolist() == ["Mộ Đức"] and not unknown


# --- 5. every problem counted -----------------------------------------------------------------------

def test_111_bad_commune_rows_are_all_counted(tmp_path):
    path = tmp_path / "communes.geojson"
    good = _box_lonlat(X0, Y0 - 300, X0 + 600, Y0)
    write_geojson(path, [_feature(good, commune_id=f"X{i}", name=None) for i in range(100)]
                  + [_feature(None, commune_id=f"Y{i}", name=f"C{i}") for i in range(11)])
    with pytest.raises(InputError) as err:
        layers.read_communes(path, crs=UTM, level="commune")
    message = str(err.value)
    assert "111 problems (100 × name empty, 11 × empty geometry); first 4:" in message
    assert len(re.findall(r"\(\d\) ", message)) == 4


def test_111_bad_fibre_rows_are_all_counted(tmp_path):
    path = tmp_path / "fibre.geojson"
    line = _line(X0, Y0, X0 + 100, Y0)
    write_geojson(path, [_feature(line, route_id=f"F{i}", status="dug") for i in range(60)]
                  + [_feature(line, route_id=f"G{i}", year="soon") for i in range(40)]
                  + [_feature(_box_lonlat(X0, Y0 - 100, X0 + 100, Y0), route_id=f"H{i}") for i in range(11)])
    with pytest.raises(InputError) as err:
        layers.read_fibre(path, crs=UTM)
    assert ("111 problems (11 × geometry not LineString or MultiLineString, 60 × status not existing or planned, "
            "40 × year not a year)") in str(err.value)


# --- 6. fibre outside the study area ----------------------------------------------------------------

def test_fibre_is_clipped_for_display_but_distances_use_the_whole_network(hand_project):
    folder = hand_project.parent
    east = X0 + 600  # the district's east edge
    write_geojson(folder / "fibre.geojson", [
        # a backbone running 20 km north-south, 1 km east of the district: in view, cut to the margin
        _feature(_line(east + 1000, Y0 - 10_000, east + 1000, Y0 + 10_000), route_id="B1", operator="VNPT"),
        # a route 3 km east: beyond the 2 km margin, off the maps, still the nearest for nobody here
        _feature(_line(east + 3000, Y0 - 300, east + 3000, Y0), route_id="B2", operator="Viettel"),
    ])
    results = run_pipeline(load_config(hand_project))  # [fibre] display_margin_m = 2000 by default
    full, shown = results.layers.fibre, results.layers.fibre_display
    assert full["route_id"].tolist() == ["B1", "B2"] and shown["route_id"].tolist() == ["B1"]
    assert full.geometry.iloc[0].length == pytest.approx(20_000, rel=1e-3)
    assert shown.geometry.iloc[0].length < 4_400  # 300 m of district + 2 km each side, nothing more
    # every distance is measured on the whole network: V3's east edge is 1 km from B1
    v3 = results.villages.set_index("village_id").loc["V3"]
    assert v3["dist_to_fibre_m"] == pytest.approx(1000, abs=1)
    # and the writers show the clipped layer
    from covgap import maps, outputs

    assert [f["properties"]["route_id"] for f in maps.map_layers(results)["layers"]["fibre"]["features"]] == ["B1"]
    assert outputs.geopackage_layers(results)["fibre_routes"]["route_id"].tolist() == ["B1"]


def test_a_far_route_still_gives_the_distance(hand_project):
    """The only route lies 5 km east: nothing is drawn, and the villages are 5 km or more from fibre."""
    write_geojson(hand_project.parent / "fibre.geojson",
                  [_feature(_line(X0 + 5600, Y0 - 300, X0 + 5600, Y0), route_id="F9", status="existing")])
    results = run_pipeline(load_config(hand_project))
    assert results.layers.fibre_display.empty
    assert results.villages["dist_to_fibre_m"].min() == pytest.approx(5000, abs=1)
