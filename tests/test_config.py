"""covgap.toml: every value is checked at load against the valid values its field declares."""

from __future__ import annotations

import dataclasses

import pytest

from covgap.config import ColumnMapping, Config, _SECTIONS, _check_field, load_config, valid_values
from covgap.errors import ConfigError, CovgapError

BASE = '[inputs]\ncommunes = { commune = "c.geojson" }\n'


def _refusal(tmp_path, text: str) -> str:
    path = tmp_path / "covgap.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert isinstance(err.value, CovgapError) and "\n" not in message
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: "):]


def test_unknown_time_zone_is_refused_with_a_hint(tmp_path):
    assert _refusal(tmp_path, BASE + '[study]\ntimezone = "Mars/Olympus"\n') == (
        "[study] timezone = 'Mars/Olympus' is not an IANA time zone: expected an IANA time zone (zoneinfo), "
        "e.g. Asia/Ho_Chi_Minh")
    assert "(did you mean 'Asia/Ho_Chi_Minh'?)" in _refusal(tmp_path, BASE + '[study]\ntimezone = "Asia/Ho_Chi_Min"\n')


def test_a_section_given_as_a_number_says_a_table_is_expected(tmp_path):
    assert _refusal(tmp_path, "grid = 5\n" + BASE) == (
        "grid = 5: expected a table [grid] (with keys cell_size_m), found a number; "
        "write [grid] on a line of its own and its keys below it")


def test_a_section_name_inside_another_section_is_explained(tmp_path):
    assert "unknown key 'grid' in [inputs] ([grid] is a section:" in _refusal(tmp_path, BASE + "grid = 5\n")


def test_column_mapping_must_be_a_table_with_one_character_separator(tmp_path):
    assert _refusal(tmp_path, BASE + 'columns = "lat"\n') == (
        "[inputs] columns = 'lat': expected a table [inputs.columns] of column names, found a string")
    message = _refusal(tmp_path, BASE + '[inputs.columns]\nlat = "a"\nlon = "b"\nsignal_dbm = "c"\nseparator = ";;"\n')
    assert message == "[inputs.columns] separator = ';;' is 2 characters long: expected empty, one character (e.g. ';') or 'tab'"
    assert "[inputs.columns] sets lat but not lon, signal_dbm" in _refusal(tmp_path, BASE + '[inputs.columns]\nlat = "a"\n')


@pytest.mark.parametrize("section, key, value, expected", [
    ("fibre", "drop_distance_m", "nan", "drop_distance_m = nan is not a finite number: expected a finite number > 0"),
    ("fibre", "drop_distance_m", "-5", "drop_distance_m = -5 is out of range: expected a finite number > 0"),
    ("dead_zones", "min_area_km2", "nan", "min_area_km2 = nan is not a finite number: expected a finite number ≥ 0"),
    ("dead_zones", "min_area_km2", "-0.1", "min_area_km2 = -0.1 is out of range: expected a finite number ≥ 0"),
    ("evidence", "area_min_share", "-1", "area_min_share = -1 is out of range: expected a finite number > 0 and ≤ 1"),
    ("evidence", "village_min_share", "0", "village_min_share = 0 is out of range: expected a finite number > 0 and ≤ 1"),
    ("signal", "usable_3g_dbm", "nan", "usable_3g_dbm = nan is not a finite number: expected a finite number from -120 to -25"),
    ("signal", "min_time_spread_hours", "nan", "min_time_spread_hours = nan is not a finite number: expected a finite number ≥ 0"),
    ("signal", "min_time_spread_hours", "-4", "min_time_spread_hours = -4 is out of range: expected a finite number ≥ 0"),
    ("inputs", "village_point_radius_m", "-300", "village_point_radius_m = -300 is out of range: expected a finite number > 0"),
    ("signal", "covered_dbm", "-30", "covered_dbm = -30 is out of range: expected a finite number from -140 to -44"),
    ("signal", "min_samples", "0", "min_samples = 0 is out of range: expected a whole number ≥ 1"),
    ("signal", "availability_share", "inf", "availability_share = inf is not a finite number: expected a finite number > 0 and ≤ 1"),
    ("grid", "cell_size_m", "2", "cell_size_m = 2 is out of range: expected a finite number from 5 to 5000"),
    ("dead_zones", "connectivity", "6", "connectivity = 6 is not a valid choice: expected 4 or 8"),
    ("output", "lang", '"fr"', "lang = 'fr' is not a valid choice: expected 'vi' or 'en'"),
    ("inputs", "default_technology", '"LTE"', "default_technology = 'LTE' is not a valid choice: expected '2G', '3G', '4G' or '5G'"),
])
def test_numbers_and_choices_out_of_their_valid_values(tmp_path, section, key, value, expected):
    text = f'[inputs]\ncommunes = {{ commune = "c.geojson" }}\n{key} = {value}\n' if section == "inputs" else \
        f"{BASE}[{section}]\n{key} = {value}\n"
    assert _refusal(tmp_path, text) == f"[{section}] {expected}"


def test_dead_level_above_covered_level_is_refused(tmp_path):
    assert _refusal(tmp_path, BASE + "[signal]\ncovered_dbm = -120\ndead_dbm = -110\n") == (
        "[signal] dead_dbm = -110 is above covered_dbm = -120: expected dead_dbm ≤ covered_dbm "
        "(a dead cell is weaker than a covered one)")


def test_every_problem_is_listed_once(tmp_path):
    message = _refusal(tmp_path, BASE + "[fibre]\ndrop_distance_m = nan\ngoal_share = 1.5\n[study]\ncrs = 'EPSG:4326'\n")
    assert message.count("; ") == 2
    assert "[study] crs = 'EPSG:4326' is not a projected (metric) CRS" in message
    assert "[fibre] goal_share = 1.5 is out of range: expected a finite number from 0 to 1" in message


def test_unknown_keys_and_sections_get_a_did_you_mean(tmp_path):
    message = _refusal(tmp_path, BASE + "[fiber]\nx = 1\n[fibre]\ndrop_distance = 100\n[villages]\ndrop_distance_m = 3\n")
    assert "unknown section [fiber] (did you mean [fibre]?)" in message
    assert "unknown key 'drop_distance' in [fibre] (did you mean 'drop_distance_m'?)" in message
    assert "unknown key 'drop_distance_m' in [villages] (did you mean [fibre] drop_distance_m?)" in message


def test_the_edges_of_the_valid_ranges_are_accepted(tmp_path):
    path = tmp_path / "covgap.toml"
    path.write_text(BASE + "[signal]\ncovered_dbm = -44\ndead_dbm = -140\nmin_time_spread_hours = 0\n"
                    "[evidence]\nvillage_min_share = 1\narea_min_share = 1\n[dead_zones]\nmin_area_km2 = 0\n"
                    '[inputs.columns]\nlat = "a"\nlon = "b"\nsignal_dbm = "c"\nseparator = "tab"\n', encoding="utf-8")
    config = load_config(path)
    assert config.signal.covered_dbm == -44 and config.inputs.columns.separator == "tab"


def test_every_number_declares_its_valid_values_and_every_default_meets_them():
    """A new numeric field must say its range (``_f(..., ge=0)``); the defaults themselves must pass the check."""
    for name, cls in [*_SECTIONS.items(), ("inputs.columns", ColumnMapping)]:
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                assert "bounds" in f.metadata or "choices" in f.metadata, f"[{name}] {f.name} declares no valid values"
            problems: list[str] = []
            _check_field(name, f, default, problems)
            assert problems == [], problems
            assert valid_values(f), f"[{name}] {f.name}"


def test_sample_config_still_loads():
    from covgap.cli import SAMPLE_CONFIG

    assert isinstance(load_config(SAMPLE_CONFIG), Config)
