"""The command line: demo through CliRunner and as a subprocess, one-line errors, help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from covgap.cli import main

COVGAP = str(Path(sys.executable).with_name("covgap"))


@pytest.mark.slow
def test_demo_through_clirunner(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "out"), "--maps", str(tmp_path / "maps"), "--lang", "en"])
    assert result.exit_code == 0, result.output
    # The run ends with the district scorecard against the four targets.
    tail = result.output[result.output.index("Scorecard"):]
    for label in ("4G in every village", "no dead zones left", "fibre passes > 80% of households", "fibre reaches every commune"):
        assert label in tail
    out = tmp_path / "out"
    for name in ("covgap.gpkg", "scorecard_district.csv", "scorecard_communes.csv", "scorecard_villages.csv",
                 "best_4g_rsrp_p50_dbm.tif", "cell_class.tif", "rejected_rows.csv"):
        assert (out / name).is_file(), name
    assert (tmp_path / "maps" / "index.html").is_file()
    assert not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.slow
def test_demo_as_a_subprocess(tmp_path):
    proc = subprocess.run([COVGAP, "demo", "--out", "o", "--maps", "m"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    assert "Bảng điểm" in proc.stdout  # Vietnamese by default
    assert "layers: 194 villages" in proc.stderr  # one log line per stage
    assert (tmp_path / "o" / "scorecard_villages.csv").is_file() and (tmp_path / "m" / "index.html").is_file()


def test_help_for_every_command():
    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0
    commands = [c for c in main.commands]
    assert {"demo", "run", "config-doc"} <= set(commands)
    for name in commands:
        res = runner.invoke(main, [name, "--help"])
        assert res.exit_code == 0 and len(res.output.strip().splitlines()) >= 3, name
        for param in main.commands[name].params:
            if isinstance(param, type(main.params[0])) and param.name != "help":
                assert param.help, f"{name} --{param.name} has no help text"


def test_the_installed_command_is_console_main_and_keeps_exit_statuses(tmp_path):
    """`covgap` is console_main (main with a quicker end: gc.freeze); statuses and output pass through unchanged."""
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "covgap"]
    assert script.value == "covgap.cli:console_main"
    ok = subprocess.run([COVGAP, "--version"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("covgap, version ")
    bad = subprocess.run([COVGAP, "run", "--no-such-option"], capture_output=True, text=True)
    assert bad.returncode == 2 and "No such option" in bad.stderr


def test_missing_config_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run([COVGAP, "run", "--config", str(tmp_path / "nope.toml")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "nope.toml" in proc.stderr and "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_village_layer_names_file_column_and_fix(hand_project, tmp_path):
    villages = hand_project.parent / "villages.geojson"
    villages.write_text(villages.read_text(encoding="utf-8").replace('"households"', '"hh_count"'), encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "--config", str(hand_project), "--out", str(tmp_path / "o"),
                                       "--maps", str(tmp_path / "m")])
    assert result.exit_code == 1
    assert "villages.geojson" in result.output and "households" in result.output and "hh_count" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_run_on_the_hand_project_prints_the_scorecard(hand_project, tmp_path):
    result = CliRunner().invoke(main, ["-q", "run", "--config", str(hand_project), "--out", str(tmp_path / "o"),
                                       "--maps", str(tmp_path / "m"), "--lang", "en"])
    assert result.exit_code == 0, result.output
    assert "33.3%" in result.output  # 1 of 3 villages meets the 4G target
    assert "48.0%" in result.output  # 96 of 200 households passed by fibre


def test_a_run_whose_map_scaffolding_child_fails_renders_it_itself(hand_project, tmp_path, monkeypatch):
    """The child that renders the maps' scaffolding at the start of a run fails (here: made to): the run renders
    it itself and writes the same pages; a dry run starts no such child."""
    from covgap import forked, mappage

    monkeypatch.setattr(mappage, "_PREPARED", {})
    mappage._skeleton.cache_clear()
    mappage._scaffolding.cache_clear()
    started = []
    real_init = forked.Forked.__init__

    def spy(self, fn, *args, **kwargs):
        started.append(getattr(fn, "__name__", ""))
        real_init(self, fn, *args, **kwargs)

    def broken():
        raise RuntimeError("no folium here")

    monkeypatch.setattr(forked.Forked, "__init__", spy)
    monkeypatch.setattr(mappage, "scaffoldings", broken)
    result = CliRunner().invoke(main, ["-q", "run", "--config", str(hand_project), "--out", str(tmp_path / "o"),
                                       "--maps", str(tmp_path / "m"), "--lang", "en"])
    assert result.exit_code == 0, result.output
    assert started[0] == "broken" and not mappage._PREPARED
    pages = sorted(p.name for p in (tmp_path / "m").glob("*.html"))
    assert "index.html" in pages and len(pages) >= 2
    assert "covgapStart(" in (tmp_path / "m" / "index.html").read_text(encoding="utf-8")
    started.clear()
    result = CliRunner().invoke(main, ["-q", "refresh", "--dry-run", "--config", str(hand_project), "--out",
                                       str(tmp_path / "o"), "--maps", str(tmp_path / "m")])
    assert result.exit_code in (0, 3), result.output
    assert "broken" not in started


def test_bad_config_value_is_one_line_naming_file_key_value_and_range(hand_project):
    toml = hand_project.read_text(encoding="utf-8")
    hand_project.write_text(toml.replace('crs = "EPSG:32649"', 'crs = "EPSG:32649"\ntimezone = "Mars/Olympus"')
                            .replace("drop_distance_m = 100", "drop_distance_m = nan"), encoding="utf-8")
    proc = subprocess.run([COVGAP, "run", "--config", str(hand_project)], capture_output=True, text=True,
                          cwd=hand_project.parent)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"Error: {hand_project}: [study] timezone = 'Mars/Olympus' is not an IANA time zone: expected an IANA time "
        "zone (zoneinfo), e.g. Asia/Ho_Chi_Minh; [fibre] drop_distance_m = nan is not a finite number: expected a "
        "finite number > 0")
    assert not (hand_project.parent / "out").exists()


def test_huge_household_count_stops_the_run_instead_of_meeting_the_fibre_target(hand_project, tmp_path):
    """households = 1e20 overflowed to a negative count and the fibre target printed "met"."""
    villages = hand_project.parent / "villages.geojson"
    villages.write_text(villages.read_text(encoding="utf-8").replace('"households": 60', '"households": 1e20'),
                        encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "--config", str(hand_project), "--out", str(tmp_path / "o"),
                                       "--maps", str(tmp_path / "m")])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {villages}: row 2 (village_id=V2): households = 1e+20, expected a whole "
                                     "number from 0 to 1,000,000")
    assert not (tmp_path / "o").exists()
