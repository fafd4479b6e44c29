"""The dask engine gives the outputs of the local engine, byte for byte; clear errors when it cannot start."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from covgap import refresh
from covgap.cli import main
from covgap.config import EngineConfig, load_config
from covgap.errors import EngineError

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "covgap.toml"
NOW_S = 1_790_000_000


def _run(config, out: Path, **kw) -> dict[str, bytes]:
    """Run the sample into ``out``; every CSV output and every file of the store but its manifest, by path."""
    config = config.replace_output(dir=out, maps_dir=out.parent / f"{out.name}-maps")
    refresh.update_outputs(config, full_rebuild=True, now_s=NOW_S, **kw)
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
             if p.is_file() and (p.suffix == ".csv" or p.relative_to(out).parts[0] == "store")}
    files.pop("store/manifest.json", None)
    return files


@pytest.mark.slow
def test_dask_engine_gives_the_outputs_of_the_local_engine(tmp_path, caplog, monkeypatch):
    """The sample on a 2-worker LocalCluster in blocks of 300 lines (gzip blocks sent as bytes, plain
    ones as references; the statistics merged by the tree reduction across both workers; the
    duplicates read again on the workers: the sample's one duplicate line, of the G-NetTrack log)."""
    pytest.importorskip("distributed")
    from covgap import engine_dask

    config = load_config(SAMPLE)
    local = _run(config, tmp_path / "local")
    dask_config = dataclasses.replace(config, engine=EngineConfig(name="dask", workers=2))
    read_again = []
    real = engine_dask.DaskExecutor.duplicate_rows
    monkeypatch.setattr(engine_dask.DaskExecutor, "duplicate_rows", lambda self, taken, parts, **kw: (
        read_again.append((taken.path.name, [len(p) for p in parts])), real(self, taken, parts, **kw))[1])
    with caplog.at_level("INFO", logger="covgap"):
        on_dask = _run(dask_config, tmp_path / "dask", chunk_rows=300)
    assert "dask engine: LocalCluster of 2 worker processes" in caplog.text
    assert read_again == [("gnettrack_vtl_2026-04-18.txt", [1])]
    assert any(name.startswith("store/stats/") for name in local)
    assert sum(name.endswith(".csv") for name in local) >= 5
    assert sorted(on_dask) == sorted(local)
    different = [name for name in local if on_dask[name] != local[name]]
    assert not different


def test_an_unreachable_scheduler_is_one_line_naming_it(tmp_path, no_maps):
    pytest.importorskip("distributed")
    import shutil

    sample = shutil.copytree(SAMPLE.parent, tmp_path / "sample", ignore=shutil.ignore_patterns("truth"))
    own = sample / "covgap.toml"
    with open(own, "a", encoding="utf-8") as fh:
        fh.write('\n[engine]\nname = "dask"\nscheduler = "tcp://127.0.0.1:9"\nconnect_timeout_s = 1\n')
    result = CliRunner().invoke(main, ["run", "--config", str(own), "--out", str(tmp_path / "out"),
                                       "--maps", str(tmp_path / "maps")])
    assert result.exit_code == 1, result.output
    assert "tcp://127.0.0.1:9" in result.output and "dask scheduler" in result.output
    assert "Traceback" not in result.output


def test_without_dask_the_engine_says_how_to_install_it(monkeypatch):
    import builtins

    from covgap import engine_dask

    real_import = builtins.__import__

    def no_distributed(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError("No module named 'distributed'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    with pytest.raises(EngineError, match=r"pip install 'covgap\[dask\]'"):
        engine_dask.connect(EngineConfig(name="dask"), 1)


def test_the_local_engine_does_not_import_dask(tmp_path):
    """Choosing nothing costs nothing: a run of the local engine never imports dask."""
    import subprocess
    import sys

    code = ("import sys; from covgap import cli, ingest, refresh, pipeline; "
            "assert 'dask' not in sys.modules and 'distributed' not in sys.modules, 'dask imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
