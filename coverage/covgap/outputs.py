"""Writing the run's outputs: GeoPackage, CSV scorecards, GeoTIFFs; atomically.

Everything is written into a temporary folder beside the output folder and
swapped into place only when complete (:func:`atomic_output_dir`), so an
interrupted run leaves the previous outputs intact. A lock file keeps two runs
from writing the same folder at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio

from covgap import __version__
from covgap.cellstats import CellClass
from covgap.errors import OutputError

log = logging.getLogger(__name__)

GPKG_NAME = "covgap.gpkg"


# --------------------------------------------------------------------------- atomic folders
@contextlib.contextmanager
def output_lock(target: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``target`` (a lock file beside it) for the duration.

    Raises :class:`OutputError` if another process holds it and ``wait`` is false.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    fh = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as err:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise OutputError(f"{target}: another covgap run ({holder}) is writing here; wait for it to finish and run again") from err
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def recover_output_dir(target: Path) -> None:
    """Finish or undo a swap that was interrupted (a kill between the two renames)."""
    target = Path(target)
    previous = target.parent / f".{target.name}.previous"
    if previous.exists():
        if target.exists():
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(previous, target)
            log.warning("restored %s from an interrupted run", target)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def atomic_output_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it replaces ``target`` whole.

    The swap is two renames on one file system (target → ``.previous``, temporary →
    target); :func:`recover_output_dir` repairs a kill between them. On any error the
    temporary folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_output_dir(target)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        previous = target.parent / f".{target.name}.previous"
        if target.exists():
            os.replace(target, previous)
        os.replace(tmp, target)
        shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- tables
def format_time(seconds: pd.Series | np.ndarray, timezone: str) -> pd.Series:
    """ISO local time strings (``2026-03-14T09:21:05+07:00``) from Unix seconds; empty where unknown."""
    s = pd.Series(np.asarray(seconds, dtype=float))
    out = pd.Series("", index=s.index, dtype=object)
    ok = s.notna()
    if ok.any():
        ts = pd.to_datetime(s[ok].astype("int64"), unit="s", utc=True).dt.tz_convert(timezone)
        out[ok] = ts.map(lambda t: t.isoformat())
    return out


def village_table(results) -> pd.DataFrame:
    """The village scorecard: one row per village, plain columns (no geometry)."""
    v = results.villages
    levels = list(results.config.inputs.communes)
    cols = ["village_id", "name", *levels, "households", *(["population"] if "population" in v else []),
            "area_km2", "share_covered", "share_weak", "share_no_4g", "share_dead", "share_unmeasured", "share_measured",
            "measured_km2", "evidence_share", "covered_of_measured", "verdict_4g", "households_in_dead_zones", "n_samples",
            "households_passed", "fibre_share", "meets_fibre_goal", "dist_to_fibre_m", "spur_length_m",
            "dist_to_planned_fibre_m", *(["fibre_subscribed", "subscribed_share"] if "subscribed_share" in v else [])]
    table = pd.DataFrame(v[cols]).copy()
    table["last_measured"] = format_time(v["t_last_s"].to_numpy(), results.config.study.timezone).to_numpy()
    return _round(table)


def _round(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for c in frame.columns:
        if c.startswith("share") or c.endswith("_share") or c == "covered_of_measured":
            frame[c] = frame[c].astype(float).round(4)
        elif c.endswith("_m") or c.endswith("_km2") or c.startswith("households_"):
            frame[c] = frame[c].astype(float).round(6 if c.endswith("_km2") else 1)
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """UTF-8 CSV with a fixed float format and ``\\n`` line ends: same data, same bytes."""
    frame.to_csv(path, index=False, encoding="utf-8", lineterminator="\n", float_format="%.10g")


# --------------------------------------------------------------------------- rasters
def write_rasters(results, folder: Path) -> list[Path]:
    """GeoTIFFs on the analysis grid: best 4G median RSRP (dBm) and the cell class."""
    grid = results.layers.grid
    common = dict(driver="GTiff", height=grid.nrows, width=grid.ncols, count=1, crs=grid.crs,
                  transform=grid.transform, compress="deflate", tiled=False)
    best_path = folder / "best_4g_rsrp_p50_dbm.tif"
    data = np.where(np.isfinite(results.best_p50), results.best_p50, -9999).astype(np.int16)
    with rasterio.open(best_path, "w", dtype="int16", nodata=-9999, **common) as dst:
        dst.write(data, 1)
        dst.set_band_description(1, "best operator median 4G RSRP (dBm)")
        dst.update_tags(TIFFTAG_SOFTWARE=f"covgap {__version__}")
    class_path = folder / "cell_class.tif"
    with rasterio.open(class_path, "w", dtype="uint8", nodata=0, **common) as dst:
        dst.write(results.classes.astype(np.uint8), 1)
        dst.set_band_description(1, "4G cell class, any operator")
        dst.update_tags(1, **{f"CLASS_{c.value}": c.label for c in CellClass}, CLASS_0="outside the study area")
        dst.write_colormap(1, {0: (0, 0, 0, 0), int(CellClass.COVERED): (26, 150, 65, 255),
                               int(CellClass.WEAK): (253, 174, 97, 255), int(CellClass.NO_SERVICE): (215, 25, 28, 255),
                               int(CellClass.INSUFFICIENT): (190, 190, 190, 255), int(CellClass.NO_4G): (197, 27, 125, 255)})
        dst.update_tags(TIFFTAG_SOFTWARE=f"covgap {__version__}")
    return [best_path, class_path]


# --------------------------------------------------------------------------- geopackage
def cells_layer(results) -> gpd.GeoDataFrame:
    """Polygons of the measured cells with the any-operator class and figures."""
    av = results.any_view
    grid = results.layers.grid
    frame = pd.DataFrame({
        "cell": av["cell"].to_numpy(dtype=np.int64),
        "cell_class": [CellClass(int(c)).label for c in av["cell_class"]],
        "best_operator": av["best_operator"].to_numpy(dtype=object),
        "share_4g": av["share_4g"].to_numpy(dtype=float),
        "rsrp_dbm_p50": av["rsrp_dbm_p50"].to_numpy(dtype=float),
        "rscp_dbm_p50": av["rscp_dbm_p50"].to_numpy(dtype=float),
        "rxlev_dbm_p50": av["rxlev_dbm_p50"].to_numpy(dtype=float),
        "n_samples": av["n_samples"].to_numpy(dtype=np.int64),
        "n_operators": av["n_operators"].to_numpy(dtype=np.int64),
        "last_measured": format_time(av["t_last_s"].to_numpy(), results.config.study.timezone).to_numpy(),
    })
    return gpd.GeoDataFrame(frame, geometry=grid.cell_boxes(frame["cell"].to_numpy()), crs=grid.crs)


def geopackage_layers(results) -> dict[str, gpd.GeoDataFrame | pd.DataFrame]:
    """Every layer of the run's GeoPackage, by layer name (working CRS)."""
    tz = results.config.study.timezone

    def with_times(zones: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        zones = zones.copy()
        zones["first_measured"] = format_time(zones["t_first_s"].to_numpy(), tz).to_numpy()
        zones["last_measured"] = format_time(zones["t_last_s"].to_numpy(), tz).to_numpy()
        return zones.drop(columns=["t_first_s", "t_last_s"])
    villages = gpd.GeoDataFrame(village_table(results), geometry=results.villages.geometry.to_numpy(), crs=results.villages.crs)
    communes = results.communes.drop(columns=["centre"])
    centres = gpd.GeoDataFrame(results.communes[["commune_id", "name", "centre_source", "centre_dist_to_fibre_m"]].assign(
        centre_reached=results.communes["communes_reached"].astype(bool)),
        geometry=gpd.GeoSeries(results.communes["centre"]).to_numpy(), crs=results.communes.crs)
    return {
        "villages": villages,
        "communes": gpd.GeoDataFrame(_round(pd.DataFrame(communes.drop(columns="geometry"))), geometry=communes.geometry.to_numpy(), crs=communes.crs),
        "commune_centres": centres,
        "dead_zones": with_times(results.zones),
        "dead_zone_operators": results.zone_operators,
        "no_4g_zones": with_times(results.no4g_zones),
        "no_4g_zone_operators": results.no4g_zone_operators,
        "operator_gap_zones": results.operator_zones,
        "needs_measurement": results.needs_measurement,
        "cells": cells_layer(results),
        "fibre_routes": results.layers.fibre,
    }


def write_geopackage(results, path: Path) -> None:
    for name, layer in geopackage_layers(results).items():
        if isinstance(layer, gpd.GeoDataFrame):
            layer.to_file(path, layer=name, driver="GPKG", engine="pyogrio")
        else:
            import pyogrio

            pyogrio.write_dataframe(pd.DataFrame(layer), path, layer=name, driver="GPKG")


# --------------------------------------------------------------------------- all of it
def write_outputs(results, folder: Path) -> list[Path]:
    """Write every output of a run into ``folder`` (which must exist and be empty)."""
    folder = Path(folder)
    written = []
    write_geopackage(results, folder / GPKG_NAME)
    written.append(folder / GPKG_NAME)
    tables = {
        "scorecard_district.csv": results.scorecard_long,
        "scorecard_district_figures.csv": _round(results.district),
        "scorecard_communes.csv": _round(pd.DataFrame(results.communes.drop(columns=["geometry", "centre"]))),
        "scorecard_villages.csv": village_table(results),
        "measurement_files.csv": results.report.files,
    }
    if results.report.write_rejected is None:
        tables["rejected_rows.csv"] = results.report.rejected.sort_values(["source_file", "source_row"], kind="mergesort")
    if results.changes is not None:  # what changed since the previous run (covgap refresh)
        tables["changes.csv"] = results.changes
    for name, table in tables.items():
        write_csv(table, folder / name)
        written.append(folder / name)
    if results.report.write_rejected is not None:  # streamed from the measurement store, never all in memory
        results.report.write_rejected(folder / "rejected_rows.csv")
        written.append(folder / "rejected_rows.csv")
    written += write_rasters(results, folder)
    from covgap import maps  # the display layers `covgap map` redraws the maps from

    written.append(maps.write_map_layers(results, folder))
    summary = run_summary(results)
    (folder / "run.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    written.append(folder / "run.json")
    log.info("outputs: %d files written", len(written))
    return written


def run_summary(results) -> dict:
    """What the run read and found, for ``run.json`` and the partner READMEs."""
    cfg = results.config
    tz = cfg.study.timezone
    first, last = results.data_period
    return {
        "tool": f"covgap {__version__}",
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": str(cfg.source) if cfg.source else None,
        "study": cfg.study.name,
        "crs": results.layers.crs.to_string(),
        "cell_size_m": cfg.grid.cell_size_m,
        "data_period": [format_time(np.array([first]), tz).iloc[0], format_time(np.array([last]), tz).iloc[0]],
        "rows": {"read": results.report.rows_read, "used": results.report.rows_used,
                 "rejected": results.report.rows_rejected, "rejected_by_reason": results.report.reason_counts()},
        "operators": results.operators,
        "inputs": {str(p): sha256_file(Path(p)) for p in results.layers.input_files if Path(p).is_file()},
        "measurement_files": results.report.files.loc[results.report.files["status"] != "refused", "file"].tolist(),
    }
