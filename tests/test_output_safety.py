"""Never destroy a folder covgap did not make (issue 9): ownership marker, --overwrite, refusals.

Each test sets up a hand project (tests/conftest.py), points an output or maps folder
somewhere dangerous and checks that the command stops with one line, exit status 1,
and that every input, the configuration and the measurement folder are still there,
byte for byte.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from covgap import cli, maps, outputs
from covgap.errors import OutputError


def covgap(*args) -> Result:
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def set_output(project: Path, **values: str) -> None:
    """Rewrite the [output] section of the hand project's covgap.toml."""
    text = project.read_text(encoding="utf-8").split("[output]")[0]
    text += "[output]\n" + "".join(f'{k} = "{v}"\n' for k, v in values.items())
    project.write_text(text, encoding="utf-8")


def assert_refused(res: Result, *fragments: str) -> None:
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --------------------------------------------------------------------------- output folder
def test_output_dir_dot_beside_the_inputs_is_refused_and_nothing_is_lost(hand_project, no_maps):
    folder = hand_project.parent
    set_output(hand_project, dir=".", maps_dir="maps")
    before = tree(folder)
    for command in ("run", "refresh"):
        res = covgap(command, "--config", hand_project)
        assert_refused(res, "output folder", "contains the configuration file", "covgap.toml")
        res = covgap(command, "--config", hand_project, "--overwrite")  # --overwrite never allows it
        assert_refused(res, "contains the configuration file")
    assert tree(folder) == before
    assert (folder / "measurements" / "hand.csv").is_file()
    assert not any(p.name.startswith(f".{folder.name}.") and p.is_dir() for p in folder.parent.iterdir())


def test_out_on_a_folder_with_other_files_is_refused_unless_overwrite(hand_project, no_maps, tmp_path):
    target = tmp_path / "somewhere"
    (target / "notes").mkdir(parents=True)
    (target / "report.docx").write_bytes(b"mine")
    (target / "notes" / "a.txt").write_text("mine too")
    res = covgap("run", "--config", hand_project, "--out", target)
    assert_refused(res, "holds files covgap did not write", "notes, report.docx", "--overwrite")
    assert (target / "report.docx").read_bytes() == b"mine"
    res = covgap("run", "--config", hand_project, "--out", target, "--overwrite")
    assert res.exit_code == 0, res.output
    assert not (target / "report.docx").exists() and (target / "scorecard_villages.csv").is_file()
    assert outputs.is_owned(target)
    # From now on the folder is covgap's own: re-runs need no --overwrite.
    assert covgap("run", "--config", hand_project, "--out", target).exit_code == 0


def test_overwrite_never_replaces_a_folder_holding_inputs(hand_project, no_maps, tmp_path):
    before = tree(tmp_path)
    res = covgap("run", "--config", hand_project, "--out", tmp_path, "--overwrite")
    assert_refused(res, "contains the configuration file")
    res = covgap("run", "--config", hand_project, "--out", hand_project.parent / "measurements", "--overwrite")
    assert_refused(res, "is [inputs] measurements")
    assert tree(tmp_path) == before


def test_output_inside_an_input_folder_is_refused(hand_project, no_maps):
    measurements = hand_project.parent / "measurements"
    res = covgap("run", "--config", hand_project, "--out", measurements / "out")
    assert_refused(res, "lies inside [inputs] measurements")
    assert not (measurements / "out").exists()
    # A measurement folder given to refresh counts as an input too.
    res = covgap("refresh", "--config", hand_project, hand_project.parent)
    assert_refused(res, "lies inside the measurement path given")


def test_an_empty_existing_folder_is_used_without_overwrite(hand_project, no_maps, tmp_path):
    (tmp_path / "empty").mkdir()
    assert covgap("run", "--config", hand_project, "--out", tmp_path / "empty").exit_code == 0
    assert outputs.is_owned(tmp_path / "empty")


def test_reruns_into_our_own_folder_replace_it_whole(hand_project, no_maps):
    out = hand_project.parent / "out"
    assert covgap("run", "--config", hand_project).exit_code == 0
    assert (out / outputs.OWNER_MARKER).is_file()
    (out / "stray.txt").write_text("left in covgap's folder")
    assert covgap("run", "--config", hand_project).exit_code == 0
    assert not (out / "stray.txt").exists()  # documented: covgap's folder holds only what covgap writes
    assert covgap("refresh", "--config", hand_project).exit_code == 0


def test_an_interrupted_swap_is_still_recovered_and_foreign_leftovers_are_kept(hand_project, no_maps):
    out = hand_project.parent / "out"
    assert covgap("run", "--config", hand_project).exit_code == 0
    before = tree(out)
    # A kill between the two renames, plus a stale temporary folder of ours and one that is not.
    out.rename(out.parent / ".out.previous")
    ours = out.parent / ".out.tmp-99999"
    ours.mkdir()
    outputs.mark_owned(ours)
    (ours / "half.csv").write_text("x")
    foreign = out.parent / ".out.tmp-foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not covgap's")
    res = covgap("refresh", "--config", hand_project)  # nothing new: the restored folder stays as it was
    assert res.exit_code == 0, res.output
    assert tree(out) == before
    assert not (out.parent / ".out.previous").exists() and not ours.exists()
    assert (foreign / "keep.txt").read_text() == "not covgap's"


def test_atomic_output_dir_proves_ownership_before_renaming(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "precious.csv").write_text("1")
    with pytest.raises(OutputError, match="did not write"):
        with outputs.atomic_output_dir(target):
            pass
    assert (target / "precious.csv").read_text() == "1"
    assert not list(tmp_path.glob(".data.*"))
    # A leftover .previous that covgap did not write is neither deleted nor overwritten.
    owned = tmp_path / "owned"
    with outputs.atomic_output_dir(owned) as tmp:
        (tmp / "a.csv").write_text("a")
    (tmp_path / ".owned.previous").mkdir()
    (tmp_path / ".owned.previous" / "b.txt").write_text("b")
    with pytest.raises(OutputError, match="in the way"):
        with outputs.atomic_output_dir(owned):
            pass
    assert (tmp_path / ".owned.previous" / "b.txt").read_text() == "b"
    assert (owned / "a.csv").read_text() == "a"


# --------------------------------------------------------------------------- maps and partner folders
def test_maps_folder_obeys_the_same_rules(hand_project, no_maps, tmp_path):
    folder = hand_project.parent
    before = tree(folder)
    res = covgap("run", "--config", hand_project, "--maps", folder)
    assert_refused(res, "maps folder", "contains the configuration file")
    res = covgap("run", "--config", hand_project, "--maps", folder / "out" / "maps")
    assert_refused(res, "maps folder", "lies inside the output folder")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html>the district's own home page</html>")
    res = covgap("run", "--config", hand_project, "--maps", site)
    assert_refused(res, "index.html was not written by covgap", "--overwrite")
    assert tree(folder) == before
    assert (site / "index.html").read_text() == "<html>the district's own home page</html>"


def test_map_writer_replaces_only_its_own_pages(hand_project, tmp_path):
    from covgap import pipeline
    from covgap.config import load_config

    results = pipeline.run_pipeline(load_config(hand_project), now_s=1_790_000_000)
    folder = tmp_path / "maps"
    folder.mkdir()
    (folder / "index.html").write_text("mine")
    (folder / "other.html").write_text("mine too")
    with pytest.raises(OutputError, match="not written by covgap"):
        maps.write_maps(results, folder)
    assert (folder / "index.html").read_text() == "mine"
    written = maps.write_maps_from_layers(maps.map_layers(results), folder, overwrite=True)
    assert maps.is_covgap_page(written[0]) and (folder / "other.html").read_text() == "mine too"


def test_export_refuses_a_foreign_partners_folder(hand_project, no_maps, tmp_path):
    out = tmp_path / "exp"
    (out / "partners").mkdir(parents=True)
    (out / "partners" / "contract.pdf").write_bytes(b"%PDF")
    res = covgap("export", "--config", hand_project, "--out", out)
    assert_refused(res, "partner folder", "holds files covgap did not write")
    assert (out / "partners" / "contract.pdf").read_bytes() == b"%PDF"
    res = covgap("export", "--config", hand_project, "--out", out, "--overwrite")
    assert res.exit_code == 0, res.output
    assert not (out / "partners" / "contract.pdf").exists()
    # In an output folder covgap made, partners/ is covgap's: export replaces it without --overwrite.
    assert covgap("run", "--config", hand_project).exit_code == 0
    assert covgap("export", "--config", hand_project).exit_code == 0


def test_every_command_that_writes_has_overwrite():
    for name in ("run", "refresh", "demo", "export", "map"):
        assert "--overwrite" in covgap(name, "--help").output, name


# --------------------------------------------------------------------------- stale maps
def test_maps_left_behind_by_a_killed_run_are_redrawn_by_the_next_refresh(hand_project, monkeypatch):
    from test_refresh import split_hand_file

    a, b = split_hand_file(hand_project)
    out, maps_dir = hand_project.parent / "out", hand_project.parent / "maps"
    assert covgap("refresh", "--config", hand_project, a).exit_code == 0
    assert maps.maps_are_current(out, maps_dir)
    drawn_from_a = (maps_dir / "index.html").read_bytes()
    # The outputs of b are swapped in, then the run dies before its maps (here: the map writer fails once).
    real = maps.write_rendered_maps

    def dies(*args, **kwargs):
        raise OutputError("killed before the maps")

    monkeypatch.setattr(maps, "write_rendered_maps", dies)
    assert covgap("refresh", "--config", hand_project, b).exit_code == 1
    assert (maps_dir / "index.html").read_bytes() == drawn_from_a
    assert not maps.maps_are_current(out, maps_dir)
    monkeypatch.setattr(maps, "write_rendered_maps", real)
    # Nothing new to take in, but the maps are behind the results: they are redrawn.
    res = covgap("refresh", "--config", hand_project, b)
    assert res.exit_code == 0, res.output
    assert "redrawn" in res.output
    assert maps.maps_are_current(out, maps_dir)
    assert (maps_dir / "index.html").read_bytes() != drawn_from_a
    # Up to date: a further refresh with nothing new leaves the maps alone.
    mtime = os.stat(maps_dir / "index.html").st_mtime_ns
    res = covgap("refresh", "--config", hand_project, b)
    assert res.exit_code == 0 and "redrawn" not in res.output
    assert os.stat(maps_dir / "index.html").st_mtime_ns == mtime


def test_maps_rendered_beside_the_partner_packages_equal_maps_drawn_from_the_outputs(hand_project, monkeypatch,
                                                                                   tmp_path):
    """A run renders its pages while the partner packages are written, from the display layers in the
    temporary output folder; they are the pages drawn afterwards from the output folder, byte for
    byte. Pages that cannot be rendered then are drawn after the swap, as before."""
    out, maps_dir = hand_project.parent / "out", hand_project.parent / "maps"
    calls = []
    real = maps.render_maps

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(maps, "render_maps", counted)
    assert covgap("run", "--config", hand_project).exit_code == 0
    assert len(calls) == 1  # rendered once, beside the partner packages
    redrawn = maps.write_maps_from_layers(maps.read_map_layers(out), tmp_path / "again", lang="vi")
    assert {p.name: p.read_bytes() for p in redrawn} == {p.name: p.read_bytes() for p in maps_dir.glob("*.html")}
    assert maps.maps_are_current(out, maps_dir)

    fails_once = []

    def fails_first(*args, **kwargs):
        if not fails_once:
            fails_once.append(1)
            raise OutputError("cannot render now")
        return real(*args, **kwargs)

    monkeypatch.setattr(maps, "render_maps", fails_first)
    res = covgap("run", "--config", hand_project)
    assert res.exit_code == 0, res.output
    assert len(fails_once) == 1 and maps.maps_are_current(out, maps_dir)


# --------------------------------------------------------------------------- messages
@pytest.mark.parametrize("households", [-3.5, None])
def test_messages_show_plain_values_not_numpy_reprs(hand_project, no_maps, households):
    import json

    path = hand_project.parent / "villages.geojson"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["features"][1]["properties"]["households"] = households
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    res = covgap("run", "--config", hand_project)
    assert res.exit_code == 1, res.output
    assert ("households = -3.5" if households is not None else "households is empty") in res.output
    assert "np." not in res.output and "float64" not in res.output


def test_plain_formats_numpy_scalars_as_python_values():
    import numpy as np

    from covgap.errors import plain

    assert [plain(v) for v in (np.float64("nan"), np.int64(3), np.str_("a"), np.bool_(True), 2.5, "x")] == [
        "nan", "3", "'a'", "True", "2.5", "'x'"]


def test_an_output_folder_that_is_a_symbolic_link_loses_only_the_link(tmp_path):
    real = tmp_path / "elsewhere"
    with outputs.atomic_output_dir(real) as tmp:
        (tmp / "a.csv").write_text("old")
    (tmp_path / "out").symlink_to(real, target_is_directory=True)
    with outputs.atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "a.csv").write_text("new")
    assert (tmp_path / "out" / "a.csv").read_text() == "new" and not (tmp_path / "out").is_symlink()
    assert (real / "a.csv").read_text() == "old"  # what the link pointed to is not deleted
    assert not list(tmp_path.glob(".out.*"))


def test_a_refused_file_removes_only_the_rejected_rows_it_wrote(tmp_path):
    import pandas as pd

    from covgap.store import REJECTED_COLUMNS, RejectedWriter

    writer = RejectedWriter(tmp_path, "ab" * 32, "x.csv")
    writer.path.parent.mkdir(parents=True)
    writer.path.write_text("someone else's file")
    writer.discard()  # it wrote nothing: it deletes nothing
    assert writer.path.read_text() == "someone else's file"
    writer.path.unlink()
    writer.write(pd.DataFrame([["x.csv", 2, "missing_signal", "", "1,2"]], columns=REJECTED_COLUMNS))
    writer.discard()
    assert not writer.path.exists()


def test_new_output_folder_is_flushed_whole_before_the_swap(tmp_path, monkeypatch):
    """Every file and folder of the new outputs is fsync'ed (from several threads) before it replaces the old ones."""
    import os

    from covgap import outputs

    flushed = []
    real = os.fsync

    def record(fd):
        flushed.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    target = tmp_path / "out"
    with outputs.atomic_output_dir(target) as tmp:
        (tmp / "a.csv").write_text("a\n", encoding="utf-8")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.csv").write_text("b\n", encoding="utf-8")
        expected = {os.path.realpath(p) for p in (tmp, tmp / "a.csv", tmp / "sub", tmp / "sub" / "b.csv",
                                                  tmp / outputs.OWNER_MARKER)}
    assert expected <= set(flushed) and len(flushed) == len(set(flushed))
    assert (target / "sub" / "b.csv").read_text(encoding="utf-8") == "b\n"
