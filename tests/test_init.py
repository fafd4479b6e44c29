"""``covgap init FOLDER``: roles and columns recognised, a covgap.toml that runs at once, nothing replaced."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import TO_WGS84, X0, Y0, _box_lonlat, _feature, hand_csv_lines, write_geojson
from covgap.cli import main
from covgap.config import load_config
from covgap.init import inspect_folder, write_config
from covgap.pipeline import load_layers, run_pipeline

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


@pytest.mark.slow
def test_init_on_the_sample_reproduces_the_demo_scorecard(tmp_path):
    folder = tmp_path / "district"
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns("covgap.toml"))
    result = CliRunner().invoke(main, ["init", str(folder), "--name", "Tư Nghĩa (mẫu)"])
    assert result.exit_code == 0, result.output
    assert f"Wrote {folder / 'covgap.toml'}" in result.output
    config = load_config(folder / "covgap.toml")
    # how init decided: the newest commune level reports; the finest raster is the population
    assert config.report.level == "commune_2025"
    assert {k: p.name for k, p in config.inputs.communes.items()} == {"commune": "communes_2019.geojson",
                                                                      "commune_2025": "communes_2025.geojson"}
    assert config.inputs.population.name == "settlement_density_100m.tif"
    assert config.inputs.fibre.name == "fibre_routes.geojson"
    assert [p.name for p in config.inputs.measurements] == ["measurements"]
    assert "roads = roads.geojson" in result.output and "not used: truth/cell_sites.csv" in result.output
    mine = run_pipeline(config).district.iloc[0]
    demo = run_pipeline(load_config(SAMPLE / "covgap.toml")).district.iloc[0]
    pd.testing.assert_series_equal(mine, demo)


def _hand_folder(tmp_path: Path) -> Path:
    """A district in another schema: villages with population only and Vietnamese column names."""
    folder = tmp_path / "huyen"
    (folder / "do_song").mkdir(parents=True)
    write_geojson(folder / "ranh_gioi_xa_2025.geojson",
                  [_feature(_box_lonlat(X0, Y0 - 300, X0 + 600, Y0), MA="X1", TEN_XA_2025="Xã Thử Nghiệm")])
    write_geojson(folder / "thon.geojson", [
        _feature(_box_lonlat(X0 + 200 * i, Y0 - 300, X0 + 200 * (i + 1), Y0), ma_thon=f"T{i}", ten_thon=f"Thôn {i}",
                 TEN_XA="Xã Thử Nghiệm", DAN_SO=340) for i in range(3)])
    a, b = list(TO_WGS84.transform(X0 + 100, Y0 - 400)), list(TO_WGS84.transform(X0 + 100, Y0 + 100))
    write_geojson(folder / "cap_quang.geojson", [_feature({"type": "LineString", "coordinates": [a, b]},
                                                          status="existing", operator="VNPT")])
    write_geojson(folder / "duong.geojson", [_feature({"type": "LineString", "coordinates": [a, b]}, kind="lane")])
    (folder / "do_song" / "hand.csv").write_text("\n".join(hand_csv_lines()) + "\n", encoding="utf-8")
    (folder / "do_song" / "notes.log").write_text("not data\n", encoding="utf-8")
    (folder / "ho_gia_dinh.csv").write_text("xa,so_ho\nXã Thử Nghiệm,100\n", encoding="utf-8")
    return folder


def test_init_maps_the_columns_of_another_schema_and_the_config_runs(tmp_path):
    folder = _hand_folder(tmp_path)
    path, plan = write_config(folder)
    assert path == folder / "covgap.toml"
    text = path.read_text(encoding="utf-8")
    assert '[inputs.village_columns]' in text and 'population = "DAN_SO"' in text and 'TEN_XA = ' not in text
    assert 'ten_xa = "TEN_XA"' in text  # the level key is the column's name in lower case
    assert '[inputs.commune_columns.ten_xa]\nname = "TEN_XA_2025"' in text
    assert "persons_per_household = 3.4" in text and "persons_per_household_table = " not in text
    assert 'fibre = "cap_quang.geojson"' in text and 'measurements = ["do_song/hand.csv"]' not in text
    assert 'measurements = ["do_song"]' in text  # notes.log is not a measurement candidate at all
    assert any("ho_gia_dinh.csv" in s for s in plan.skipped)  # a CSV the reader does not know is listed, not used
    assert plan.roads == folder / "duong.geojson" and 'roads = "duong.geojson"' in text  # roads: for the plans
    config = load_config(path)
    layers = load_layers(config)
    assert layers.villages["households"].tolist() == [100, 100, 100]
    assert layers.communes["name"].tolist() == ["Xã Thử Nghiệm"]


def test_init_never_replaces_a_config(tmp_path):
    folder = _hand_folder(tmp_path)
    (folder / "covgap.toml").write_text("# mine\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(main, ["init", str(folder)])
    assert result.exit_code == 0 and "covgap.toml exists and was left as it is" in result.output
    assert (folder / "covgap.toml").read_text(encoding="utf-8") == "# mine\n"
    assert (folder / "covgap.toml.new").is_file()
    before = (folder / "covgap.toml.new").read_bytes()
    result = runner.invoke(main, ["init", str(folder)])
    assert result.exit_code == 1
    assert "both covgap.toml and covgap.toml.new exist; covgap init replaces neither" in result.output
    assert (folder / "covgap.toml.new").read_bytes() == before


def test_init_says_what_it_could_not_decide_and_writes_nothing(tmp_path):
    folder = _hand_folder(tmp_path)
    (folder / "thon.geojson").unlink()
    shutil.copy(folder / "cap_quang.geojson", folder / "fibre_backbone.geojson")
    result = CliRunner().invoke(main, ["init", str(folder)])
    assert result.exit_code == 1
    assert "covgap init could not decide: villages and communes: no polygon or point layer has a households or " \
           "population column" in result.output
    assert "fibre: cap_quang.geojson and fibre_backbone.geojson both read as fibre" in result.output
    assert not (folder / "covgap.toml").exists()


def test_init_reports_on_the_newest_level_else_the_one_with_most_units(tmp_path):
    folder = _hand_folder(tmp_path)
    plan = inspect_folder(folder)
    assert plan.report_level == "ten_xa"
    assert "report level = ten_xa: the newest of the commune layers (ten_xa 2025), the units in force" in plan.reasons
    (folder / "ranh_gioi_xa_2025.geojson").rename(folder / "ranh_gioi_xa.geojson")
    plan = inspect_folder(folder)
    assert "report level = ten_xa: no year in the layers' names; the level with the most units (1)" in plan.reasons


def test_refresh_with_an_empty_measurements_setting_names_it(hand_project, no_maps):
    text = hand_project.read_text(encoding="utf-8").replace('measurements = ["measurements"]', "measurements = []")
    hand_project.write_text(text, encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(main, ["run", "--config", str(hand_project)]).exit_code == 0  # fibre outputs, no measurements
    result = runner.invoke(main, ["refresh", "--config", str(hand_project)])
    assert result.exit_code == 1
    assert f"Error: {hand_project}: [inputs] measurements = [] names no measurement file or folder" in result.output
    assert "Error: .:" not in result.output


def test_init_takes_a_census_table_for_villages_with_population_only(tmp_path):
    folder = _hand_folder(tmp_path)
    (folder / "dan_so_2019.csv").write_text("ten_xa,households_2019,population_2019\nXã Thử Nghiệm,100,400\n",
                                            encoding="utf-8")
    path, plan = write_config(folder)
    assert 'persons_per_household_table = "dan_so_2019.csv"' in path.read_text(encoding="utf-8")
    assert not any(s.startswith("dan_so_2019.csv") for s in plan.skipped)
    villages = load_layers(load_config(path)).villages
    assert villages["households"].tolist() == [85, 85, 85]  # 340 persons / 4.0 per household
    assert villages["source_of_households"].tolist() == ["population ÷ 4 (table, ten_xa Xã Thử Nghiệm)"] * 3
