"""covgap watch: which files are taken in and when, the loop's errors and reloads, and the command end to end
(a real process: files dropped in, a bad one, a layer changed, Ctrl-C), its outputs those of covgap refresh."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import hand_csv_lines
from covgap import watch as watch_mod
from covgap.errors import CovgapError, OutputError

COVGAP = str(Path(sys.executable).with_name("covgap"))


class Clock:
    """A clock the test moves: ``clock()`` for the monotonic one, ``wall()`` for file times."""

    def __init__(self, wall: float):
        self.t, self.w = 0.0, wall

    def clock(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.w

    def tick(self, s: float) -> None:
        self.t += s
        self.w += s


def _file(path: Path, text: str, *, mtime: float) -> Path:
    path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime, mtime))
    return path


def test_files_there_and_old_are_taken_at_once_new_ones_once_they_stop_changing(tmp_path):
    now = 2_000_000_000.0
    c = Clock(now)
    old = _file(tmp_path / "old.csv", "a", mtime=now - 60)
    fresh = _file(tmp_path / "fresh.csv", "b", mtime=now - 2)  # written 2 s before watching began
    w = watch_mod.FileWatch(10, clock=c.clock, wall=c.wall)
    assert w.ready([old, fresh]) == [old]
    w.done([old])
    c.tick(5)
    grown = _file(tmp_path / "new.csv", "c", mtime=c.w)  # arrives while watching, already 1 byte
    assert w.ready([old, fresh, grown]) == []
    c.tick(5)  # fresh: unchanged for 10 s since first seen
    assert w.ready([old, fresh, grown]) == [fresh]
    w.done([fresh])
    c.tick(6)
    _file(grown, "cc", mtime=c.w)  # still being copied in: its 10 s start again
    assert w.ready([old, fresh, grown]) == []
    c.tick(9.5)
    assert w.ready([old, fresh, grown]) == []
    c.tick(0.5)
    assert w.ready([old, fresh, grown]) == [grown]
    # Not done (the refresh failed): offered again. Done: not again until it changes.
    assert w.ready([old, fresh, grown]) == [grown]
    w.done([grown])
    assert w.ready([old, fresh, grown]) == []
    c.tick(1)
    _file(old, "a2", mtime=c.w)  # an old file rewritten: a new state, taken once it settles
    assert w.ready([old, fresh, grown]) == []
    c.tick(10)
    assert w.ready([old, fresh, grown]) == [old]
    # A file that went away is forgotten: back with the same content and time, it is new again.
    w.done([old])
    grown.unlink()
    assert w.ready([old, fresh, grown]) == []
    _file(grown, "cc", mtime=c.w)
    assert w.ready([old, fresh, grown]) == []
    c.tick(10)
    assert w.ready([old, fresh, grown]) == [grown]


def test_the_same_size_and_time_after_the_settle_time_is_what_settles_a_file_not_the_clock_alone(tmp_path):
    """A file rewritten with the same size but a new modification time restarts its wait."""
    now = 2_000_000_000.0
    c = Clock(now)
    w = watch_mod.FileWatch(3, clock=c.clock, wall=c.wall)
    f = _file(tmp_path / "f.csv", "abc", mtime=now)
    assert w.ready([f]) == []
    c.tick(2)
    _file(f, "xyz", mtime=now + 2)
    c.tick(2)
    assert w.ready([f]) == []  # 4 s since first seen, but it changed: its wait starts again at this look
    c.tick(3)
    assert w.ready([f]) == [f]


def test_inputs_state_changes_with_a_layer_and_a_shapefile_sidecar(tmp_path):
    shp, dbf, geojson = tmp_path / "v.shp", tmp_path / "v.dbf", tmp_path / "c.geojson"
    for p in (shp, dbf, geojson):
        _file(p, "x", mtime=1_000_000_000)
    before = watch_mod.inputs_state([shp, geojson, tmp_path / "missing.toml"])
    assert watch_mod.inputs_state([shp, geojson, tmp_path / "missing.toml"]) == before
    _file(dbf, "xy", mtime=1_000_000_000)  # attributes edited: the .shp itself unchanged
    assert watch_mod.inputs_state([shp, geojson, tmp_path / "missing.toml"]) != before


def test_the_loop_reloads_on_a_change_shows_an_error_once_and_tries_the_files_again(tmp_path):
    """The watch loop with stand-ins: a change of the inputs loads them again; a refresh that fails with an
    error covgap explains is shown once, and the same files are tried at the next look until it works."""
    c = Clock(2_000_000_000.0)
    f = _file(tmp_path / "f.csv", "abc", mtime=c.w - 60)
    state = {"inputs": 1, "fail": 2}
    prepared, refreshed, said = [], [], []

    def refresh(p, paths):
        if state["fail"]:
            state["fail"] -= 1
            raise OutputError("another covgap is writing the outputs")
        refreshed.append((p, [x.name for x in paths]))

    def inputs():
        return (state["inputs"],)

    def prepare():
        prepared.append(state["inputs"])
        return f"prepared{state['inputs']}"

    def sleep(s):
        c.tick(s)
        if c.t == 4:
            state["inputs"] = 2  # a layer edited between two looks

    watch_mod.watch(inputs=inputs, prepare=prepare, files=lambda p: [f], refresh=refresh, echo=said.append,
                    every_s=1, settle_s=10, sleep=sleep, clock=c.clock, wall=c.wall, cycles=7)
    assert prepared == [1, 2]
    assert refreshed == [("prepared1", ["f.csv"])]  # third look: done, then not again
    assert said == ["Error: another covgap is writing the outputs",
                    "The configuration or a layer changed: loading them again."]


def test_a_configuration_that_cannot_be_loaded_waits_for_the_next_change(tmp_path):
    c = Clock(2_000_000_000.0)
    f = _file(tmp_path / "f.csv", "abc", mtime=c.w - 60)
    state = {"inputs": 1}
    said, refreshed = [], []

    def prepare():
        if state["inputs"] == 1:
            raise CovgapError("covgap.toml: [inputs] villages: file not found")
        return "ok"

    def sleep(s):
        c.tick(s)
        if c.t == 3:
            state["inputs"] = 2

    watch_mod.watch(inputs=lambda: (state["inputs"],), prepare=prepare, files=lambda p: [f],
                    refresh=lambda p, paths: refreshed.append(p), echo=said.append, every_s=1, settle_s=10,
                    sleep=sleep, clock=c.clock, wall=c.wall, cycles=5)
    assert said == ["Error: covgap.toml: [inputs] villages: file not found",
                    "The configuration or a layer changed: loading them again."]
    assert refreshed == ["ok"]


# --------------------------------------------------------------------------- the command, end to end
def _wait_for(predicate, what: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    pytest.fail(f"{what}: not seen in {timeout:g} s\n{log.read_text(encoding='utf-8')[-4000:]}")


def _manifest_names(out: Path) -> set[str]:
    import json

    path = out / "store" / "manifest.json"
    if not path.is_file():
        return set()
    return {f["name"] for f in json.loads(path.read_text(encoding="utf-8"))["files"]}  # (swapped in whole)


def _start_watch(project: Path, tmp_path: Path, settle: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "watch.log"
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen([COVGAP, "watch", "--config", str(project), "--every", "0.2", "--settle", settle],
                                cwd=project.parent, stdout=fh, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "TMPDIR": str(tmp_path)})
    return proc, log


def test_the_command_takes_files_as_they_arrive_like_refresh_and_stops_on_ctrl_c(hand_project, tmp_path):
    """A real `covgap watch`: a.csv is there at the start, b.csv dropped in later, then a file that is not a CSV
    at all (refused, the watch goes on), then a household count changed in the villages layer (loaded again,
    used by the next refresh). Its outputs are byte for byte those of `covgap refresh` doing the same steps.
    Ctrl-C ends it with status 0, and no process of it is left."""
    from click.testing import CliRunner

    from covgap import cli

    lines = hand_csv_lines()
    project = hand_project.parent
    inbox = project / "measurements"
    (inbox / "hand.csv").unlink()
    a_text = "\n".join([lines[0], *lines[1:13]]) + "\n"
    b_text = "\n".join([lines[0], *lines[13:]]) + "\n"
    c_text = "\n".join([lines[0], lines[5].replace(":00+07:00", ":30+07:00", 1)]) + "\n"
    _file(inbox / "a.csv", a_text, mtime=time.time() - 60)
    villages = project / "villages.geojson"
    proc, log = _start_watch(hand_project, tmp_path, "0.5")
    out = project / "out"
    said = lambda: log.read_text(encoding="utf-8")  # noqa: E731
    try:
        _wait_for(lambda: said().count("Outputs: ") == 1, "a.csv taken in", proc, log)
        assert _manifest_names(out) == {"a.csv"}
        (inbox / "b.csv").write_text(b_text, encoding="utf-8")
        _wait_for(lambda: said().count("Outputs: ") == 2, "b.csv taken in", proc, log)
        assert _manifest_names(out) == {"a.csv", "b.csv"}
        watched_ab = {p.name: p.read_bytes() for p in sorted(out.glob("*.csv"))}
        (inbox / "garbage.csv").write_bytes(b"\x00\x01\x02 not a measurement file \xff\xfe")
        _wait_for(lambda: "Files: 0 taken in, 0 skipped, 1 refused" in said(), "garbage.csv refused", proc, log)
        villages.write_text(villages.read_text(encoding="utf-8").replace('"households": 60', '"households": 66'),
                            encoding="utf-8")
        _wait_for(lambda: "loading them again" in said(), "the layers loaded again", proc, log)
        (inbox / "c.csv").write_text(c_text, encoding="utf-8")
        _wait_for(lambda: said().count("Outputs: ") == 3, "c.csv taken in", proc, log)
        assert _manifest_names(out) == {"a.csv", "b.csv", "c.csv"}
        watched_abc = {p.name: p.read_bytes() for p in sorted(out.glob("*.csv"))}
        time.sleep(0.3)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    text = said()
    assert proc.returncode == 0, text[-3000:]
    assert text.rstrip().endswith("Stopped watching.") and "Traceback" not in text
    assert text.count("The configuration or a layer changed: loading them again.") == 1
    assert subprocess.run(["pgrep", "-f", str(hand_project)], capture_output=True).returncode == 1  # none left

    # The same steps by `covgap refresh`, into another folder: the same outputs.
    villages.write_text(villages.read_text(encoding="utf-8").replace('"households": 66', '"households": 60'),
                        encoding="utf-8")
    ref = tmp_path / "ref"

    def refresh(path: Path) -> None:
        res = CliRunner().invoke(cli.main, ["refresh", "--config", str(hand_project), "--out", str(ref),
                                            "--maps", str(tmp_path / "ref_maps"), str(path)])
        assert res.exit_code == 0, res.output

    refresh(inbox / "a.csv")
    refresh(inbox / "b.csv")
    assert {p.name: p.read_bytes() for p in sorted(ref.glob("*.csv"))} == watched_ab
    villages.write_text(villages.read_text(encoding="utf-8").replace('"households": 60', '"households": 66'),
                        encoding="utf-8")
    refresh(inbox / "c.csv")
    refreshed_abc = {p.name: p.read_bytes() for p in sorted(ref.glob("*.csv"))}
    assert refreshed_abc == watched_abc
    assert b",66," in refreshed_abc["scorecard_villages.csv"] and b",66," not in watched_ab["scorecard_villages.csv"]


def test_the_command_stops_on_sigterm_too(hand_project, tmp_path):
    proc, log = _start_watch(hand_project, tmp_path, "0")
    _wait_for(lambda: "Outputs: " in log.read_text(encoding="utf-8"), "the first refresh", proc, log)
    time.sleep(0.3)
    proc.terminate()
    proc.wait(timeout=60)
    text = log.read_text(encoding="utf-8")
    assert proc.returncode == 0 and text.rstrip().endswith("Stopped watching."), text[-2000:]


def test_a_refresh_with_the_layers_prepared_loads_nothing_again_and_leaves_them_as_they_were(hand_project, no_maps,
                                                                                              monkeypatch):
    """What watch keeps between refreshes: the layers are not loaded again, no layer side is started, and the
    refreshes (analysis and every output) leave the prepared layers and layer side as they were, pickle for pickle."""
    import pickle

    from covgap import outputs, pipeline, refresh
    from covgap.config import load_config

    config = load_config(hand_project)
    prepared = refresh.prepare(config)
    before = pickle.dumps((prepared.layers, prepared.side))

    def not_again(*args, **kwargs):
        raise AssertionError("loaded or started again")

    monkeypatch.setattr(pipeline, "load_layers", not_again)
    monkeypatch.setattr(pipeline, "start_layer_side", not_again)
    inbox = hand_project.parent / "measurements"
    lines = hand_csv_lines()
    (inbox / "hand.csv").write_text("\n".join(lines[:14]) + "\n", encoding="utf-8")
    (inbox / "more.csv").write_text("\n".join([lines[0], *lines[14:]]) + "\n", encoding="utf-8")
    for name in ("hand.csv", "more.csv"):
        outcome = refresh.update_outputs(config, [inbox / name], full_rebuild=False, prepared=prepared,
                                         write_products=outputs.write_outputs)
        assert outcome.results is not None and [f.status for f in outcome.files] == ["taken"]
    assert pickle.dumps((prepared.layers, prepared.side)) == before


def test_a_process_that_prepared_reads_even_small_files_with_the_compiled_parser_to_the_same_results(
        hand_project, no_maps, monkeypatch, tmp_path):
    """``covgap watch`` loads the compiled parser once (refresh.prepare); then every file it reads goes through it,
    small ones too, with the same outputs and store as the reader of a process that has not loaded it."""
    import pandas as pd

    from covgap import fastparse, outputs, refresh
    from covgap.config import load_config

    config = load_config(hand_project)
    monkeypatch.setattr(fastparse, "_module", None)
    plain = config.replace_output(dir=tmp_path / "plain")
    refresh.update_outputs(plain, full_rebuild=True, write_products=outputs.write_outputs)
    assert fastparse.loaded() is None  # a small file: the reader, no compiled parser loaded

    prepared = refresh.prepare(config)
    if fastparse.loaded() is None:
        pytest.skip("numba is not available here")
    parsed = []
    real = fastparse.parse_block
    monkeypatch.setattr(fastparse, "parse_block", lambda *a, **k: parsed.append(1) or real(*a, **k))
    compiled = config.replace_output(dir=tmp_path / "compiled")
    refresh.update_outputs(compiled, full_rebuild=True, write_products=outputs.write_outputs, prepared=prepared)
    assert parsed  # the small file went through the compiled parser
    names = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*.csv"))
    assert names and names == sorted(p.relative_to(tmp_path / "compiled") for p in (tmp_path / "compiled").rglob("*.csv"))
    for name in names:
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "compiled" / name).read_bytes(), name
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "plain" / "store" / "cells_total.parquet"),
                                  pd.read_parquet(tmp_path / "compiled" / "store" / "cells_total.parquet"))


_PAUSING_WATCH = """
import sys, time
from covgap import cli, outputs
fsync = outputs._fsync_tree
calls = []

def pausing(*a, **k):  # the second refresh pauses just before its swap
    calls.append(1)
    if len(calls) == 2:
        print("covgap-test: paused", flush=True)
        time.sleep(60)
    return fsync(*a, **k)

outputs._fsync_tree = pausing
cli.main(args=sys.argv[1:], prog_name="covgap")
"""


def test_ctrl_c_during_a_refresh_ends_with_130_and_leaves_the_outputs_of_the_refresh_before(hand_project, tmp_path):
    lines = hand_csv_lines()
    project = hand_project.parent
    inbox = project / "measurements"
    (inbox / "hand.csv").write_text("\n".join(lines[:13]) + "\n", encoding="utf-8")
    os.utime(inbox / "hand.csv", (time.time() - 60, time.time() - 60))
    log = tmp_path / "watch.log"
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen([sys.executable, "-c", _PAUSING_WATCH, "watch", "--config", str(hand_project),
                                 "--every", "0.2", "--settle", "0.3"], cwd=project, stdout=fh, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    out = project / "out"
    said = lambda: log.read_text(encoding="utf-8")  # noqa: E731
    try:
        _wait_for(lambda: "refreshed in" in said(), "the first refresh", proc, log)
        before = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        (inbox / "more.csv").write_text("\n".join([lines[0], *lines[13:]]) + "\n", encoding="utf-8")
        _wait_for(lambda: "covgap-test: paused" in said(), "the second refresh's pause", proc, log)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = said()
    assert proc.returncode == 130, text[-3000:]
    assert "Interrupted during a refresh; the outputs are those of the refresh before." in text
    assert "Traceback" not in text
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before
    assert not [p.name for p in project.iterdir() if p.name.startswith((".out.tmp-", ".out.previous"))]
    assert subprocess.run(["pgrep", "-f", str(hand_project)], capture_output=True).returncode == 1


def test_a_file_that_grows_is_taken_again_and_its_earlier_rows_do_not_count_twice(hand_project, no_maps, tmp_path):
    """What watch does with a file rows are appended to: refresh takes the grown file in again (a new SHA-256);
    its earlier rows are duplicates of the version taken before, and the statistics are those of a run on the
    grown file alone."""
    import pandas as pd
    from click.testing import CliRunner

    from covgap import cli

    lines = hand_csv_lines()
    inbox = hand_project.parent / "measurements"
    log = inbox / "hand.csv"
    log.write_text("\n".join(lines[:10]) + "\n", encoding="utf-8")
    out = hand_project.parent / "out"

    def covgap(*args) -> None:
        res = CliRunner().invoke(cli.main, [str(a) for a in args])
        assert res.exit_code == 0, res.output

    covgap("refresh", "--config", hand_project, log)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines[10:]) + "\n")
    covgap("refresh", "--config", hand_project, log)
    covgap("run", "--config", hand_project, "--out", tmp_path / "run", "--maps", tmp_path / "maps")
    assert (out / "store" / "cells_total.parquet").read_bytes() == (tmp_path / "run" / "store" / "cells_total.parquet").read_bytes()
    rejected = pd.read_csv(out / "rejected_rows.csv")
    again = rejected[(rejected["reason"] == "duplicate_row")]
    assert len(again) == 9 + 1  # the 9 rows of the first version, and the hand file's own planted duplicate


def test_outputs_locked_by_another_run_are_waited_for_and_then_refreshed(hand_project, tmp_path):
    """Another covgap run holds the output lock: watch says so once, keeps the file waiting, and takes it in
    once the lock is free; Ctrl-C then ends it with status 0 (the failed refresh does not count as one running)."""
    from covgap import outputs

    out = hand_project.parent / "out"
    with outputs.output_lock(out):
        proc, log = _start_watch(hand_project, tmp_path, "0")
        _wait_for(lambda: "another covgap run" in log.read_text(encoding="utf-8"), "the lock's message", proc, log)
        time.sleep(1.0)  # several looks meanwhile: the message is not repeated
    _wait_for(lambda: "refreshed in" in log.read_text(encoding="utf-8"), "the refresh after the lock", proc, log)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    text = log.read_text(encoding="utf-8")
    assert proc.returncode == 0 and text.rstrip().endswith("Stopped watching."), text[-3000:]
    assert text.count("another covgap run") == 1
    assert (out / "store" / "manifest.json").is_file()
