"""Writing the run's outputs: GeoPackage, CSV scorecards, GeoTIFFs; atomically.

Everything is written into a temporary folder beside the output folder and
swapped into place only when complete (:func:`atomic_output_dir`), so an
interrupted run leaves the previous outputs intact. A lock file keeps two runs
from writing the same folder at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import filelock
import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely

from covgap import __version__
from covgap.cellstats import CellClass
from covgap.errors import OutputError
from covgap.store import sha256_file

log = logging.getLogger(__name__)

GPKG_NAME = "covgap.gpkg"


# --------------------------------------------------------------------------- ownership
#: The file that marks a folder as covgap's own. :func:`atomic_output_dir` writes it into every
#: folder it swaps in (and into its temporary folder first), and nothing is ever renamed away or
#: deleted unless it carries it (or the user said ``--overwrite``). Same bytes every run.
OWNER_MARKER = ".covgap-output.json"
_MARKER_TEXT = json.dumps({
    "made_by": "covgap",
    "note": "covgap wrote this folder and replaces it whole at every run; keep no other files here",
}, indent=2) + "\n"


def mark_owned(folder: Path) -> None:
    """Write the ownership marker into ``folder`` (which covgap has just made)."""
    (Path(folder) / OWNER_MARKER).write_text(_MARKER_TEXT, encoding="utf-8")


def is_owned(folder: Path) -> bool:
    """Did covgap make ``folder``? True when it carries :data:`OWNER_MARKER`.

    An output folder of covgap 0.1 (before the marker) is recognised by its ``run.json``
    whose ``tool`` is covgap together with the measurement store's ``store/manifest.json``.
    """
    folder = Path(folder)
    try:
        marker = json.loads((folder / OWNER_MARKER).read_text(encoding="utf-8"))
        return isinstance(marker, dict) and marker.get("made_by") == "covgap"
    except (OSError, ValueError):
        pass
    try:
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(run, dict) and str(run.get("tool", "")).startswith("covgap ")
            and (folder / "store" / "manifest.json").is_file())


def input_paths(config, extra: Iterable[Path] = ()) -> list[tuple[str, Path]]:
    """Every input of a run, named by where it comes from: what no output folder may touch.

    The configuration file, the configured layers, population raster and measurement
    files or folders, and the measurement paths given on the command line (``extra``).
    """
    inputs = config.inputs
    out: list[tuple[str, Path]] = [("the configuration file", config.source)] if config.source is not None else []
    out.append(("[inputs] villages", inputs.villages))
    out += [(f"[inputs] communes.{level}", path) for level, path in inputs.communes.items()]
    out.append(("[inputs] fibre", inputs.fibre))
    if inputs.population is not None:
        out.append(("[inputs] population", inputs.population))
    if inputs.persons_per_household_table is not None:
        out.append(("[inputs] persons_per_household_table", inputs.persons_per_household_table))
    if inputs.roads is not None:
        out.append(("[inputs] roads", inputs.roads))
    out += [(f"[inputs] context ({c.kind})", c.path) for c in inputs.context]
    out += [("[inputs] measurements", path) for path in inputs.measurements]
    out += [("the measurement path given", Path(path)) for path in extra]
    return out


def path_relation(folder: Path, other: Path) -> str | None:
    """How ``folder`` stands to ``other`` (both resolved): "is", "contains", "lies inside" or None."""
    if folder == other:
        return "is"
    if folder in other.parents:
        return "contains"
    if other in folder.parents:
        return "lies inside"
    return None


def check_clear_of_inputs(folder: Path, inputs: Iterable[tuple[str, Path]], *, label: str) -> None:
    """Refuse a folder covgap writes that is, contains or lies inside an input (one-line :class:`OutputError`)."""
    folder = Path(folder)
    where = folder.resolve()
    clashes = [(rel, what, path) for what, path in inputs if (rel := path_relation(where, Path(path).resolve()))]
    if clashes:
        rel, what, path = clashes[0]
        more = f" (and {len(clashes) - 1} other input{'s' if len(clashes) > 2 else ''})" if len(clashes) > 1 else ""
        raise OutputError(f"{label} {folder} ({where}) {rel} {what} {path}{more}; covgap replaces what it writes there, "
                          "so it needs a folder of its own that holds no input, e.g. out/ beside covgap.toml "
                          "(--out, or [output] dir / maps_dir)")


def check_replaceable(folder: Path, *, overwrite: bool = False, label: str = "output folder") -> None:
    """Refuse to replace ``folder`` unless it is missing, empty, covgap's own or ``overwrite`` is given."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir():
        raise OutputError(f"{label} {folder}: is a file, not a folder; give a folder (--out, or [output] dir)")
    if overwrite or is_owned(folder):
        return
    entries = sorted(p.name for p in folder.iterdir())
    if entries:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise OutputError(f"{label} {folder}: holds files covgap did not write ({shown}) and covgap replaces this "
                          "folder whole; choose a new or empty folder, or give --overwrite to replace it and "
                          "delete what it holds")


def check_output_locations(config, extra_inputs: Iterable[Path] = (), *, overwrite: bool = False) -> None:
    """Every check on the output and maps folders of a run, before anything is read or written.

    The output folder must be clear of every input (:func:`check_clear_of_inputs`) and
    replaceable (:func:`check_replaceable`); the maps folder must be clear of the
    inputs and of the output folder, and hold no page covgap did not write
    (:func:`covgap.maps.check_maps_folder`).
    """
    from covgap import maps

    out = Path(config.output.dir)
    inputs = input_paths(config, extra_inputs)
    check_clear_of_inputs(out, inputs, label="output folder")
    check_replaceable(out, overwrite=overwrite)
    maps.check_maps_folder(Path(config.output.maps_dir), out_dir=out, inputs=inputs, overwrite=overwrite,
                           assets=config.output.map_assets)


# --------------------------------------------------------------------------- atomic folders
def _lock_file(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def output_lock(target: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``target`` (a lock file beside it) for the duration.

    A portable lock (``filelock``: ``flock`` on POSIX, ``msvcrt`` on Windows). The
    holder's pid goes to a second file beside it, for the message.

    Raises :class:`OutputError` if another process holds it and ``wait`` is false.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = _lock_file(target)
    holder_path = lock_path.with_name(lock_path.name + "-holder")
    lock = filelock.FileLock(lock_path)
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except filelock.Timeout as err:
        try:
            holder = holder_path.read_text(encoding="utf-8").strip() or "another process"
        except OSError:
            holder = "another process"
        raise OutputError(f"{target}: another covgap run ({holder}) is writing here; wait for it to finish and "
                          "run again (or give --wait)") from err
    try:
        holder_path.write_text(f"pid {os.getpid()}", encoding="utf-8")
        yield
    finally:
        lock.release()


def _previous(target: Path) -> Path:
    return target.parent / f".{target.name}.previous"


def _remove_tree(path: Path) -> None:
    """Delete a folder covgap owns; a symbolic link (an output folder that was a link) loses only the link."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path)


def recover_output_dir(target: Path) -> None:
    """Finish or undo a swap that was interrupted (a kill between the two renames).

    Restores ``.<name>.previous`` when the folder itself is missing (a rename back,
    which loses nothing), and removes a leftover ``.previous`` or temporary folder
    only when it carries covgap's marker (or is an empty temporary folder); anything
    else is left where it is, with a warning.
    """
    target = Path(target)
    previous = _previous(target)
    if previous.exists():
        if not target.exists():
            os.replace(previous, target)
            log.warning("restored %s from an interrupted run", target)
        elif is_owned(previous):
            _remove_tree(previous)
        else:
            log.warning("left %s in place: covgap did not write it; move or delete it", previous)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        if stale.is_dir() and is_owned(stale):
            _remove_tree(stale)
        elif stale.is_dir() and not any(stale.iterdir()):
            stale.rmdir()  # killed before its marker was written: empty, nothing to lose
        else:
            log.warning("left %s in place: covgap did not write it; move or delete it", stale)


@contextlib.contextmanager
def atomic_output_dir(target: Path, *, overwrite: bool = False,
                      inputs: Iterable[tuple[str, Path]] = ()) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it replaces ``target`` whole.

    The swap is two renames on one file system (target → ``.previous``, temporary →
    target); :func:`recover_output_dir` repairs a kill between them. On any error the
    temporary folder is removed and ``target`` is untouched.

    Parameters
    ----------
    target
        The folder to replace. It must be missing, empty, covgap's own
        (:func:`is_owned`) or ``overwrite`` must be given; checked before anything is
        renamed or deleted, and again just before the swap.
    overwrite
        Replace a non-empty folder covgap did not make (``--overwrite``).
    inputs
        ``(what, path)`` of every input (:func:`input_paths`): ``target`` must not be,
        contain or lie inside any of them, whatever ``overwrite`` says.

    Raises
    ------
    OutputError
        ``target`` holds inputs, or holds files covgap did not write and ``overwrite`` is false.
    """
    target = Path(target)
    inputs = list(inputs)
    check_clear_of_inputs(target, inputs, label="output folder")
    check_replaceable(target, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_output_dir(target)
    previous = _previous(target)
    if previous.exists():
        raise OutputError(f"{previous}: a folder covgap did not write is in the way of the output swap; move or delete it")
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    try:
        tmp.mkdir()
    except FileExistsError as err:
        raise OutputError(f"{tmp}: a folder covgap did not write is in the way; move or delete it") from err
    try:
        mark_owned(tmp)
        yield tmp
        _fsync_tree(tmp)
        check_replaceable(target, overwrite=overwrite)  # again: nothing may have moved in meanwhile
        if target.exists():
            os.replace(target, previous)
        os.replace(tmp, target)
        if previous.exists() or previous.is_symlink():
            try:
                _remove_tree(previous)  # what was just renamed away: ours, or --overwrite
            except OSError as err:  # the new outputs are in place; the next run retries
                log.warning("could not remove %s (%s); the next run removes it", previous, err)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the temporary folder made above
        raise


#: Threads that flush a new output folder to disk together (each ``fsync`` waits on the disk, not the CPU).
FSYNC_THREADS = 16


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` (and itself) to disk before the swap makes it the output.

    The folders are flushed too, so the names of the new files are on disk as well as their bytes.
    """
    fsync_paths([folder, *folder.rglob("*")])


def fsync_paths(paths: Iterable[Path]) -> None:
    """Flush files and folders to disk, :data:`FSYNC_THREADS` at once (symbolic links are skipped).

    Issued together, the flushes are committed together by the file system: on the sample's
    ~290 output files about 0.04 s instead of 0.25–0.95 s one after another.
    """
    from concurrent.futures import ThreadPoolExecutor

    def flush(path: Path) -> None:
        if path.is_symlink():
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    with ThreadPoolExecutor(max_workers=FSYNC_THREADS, thread_name_prefix="covgap-fsync") as pool:
        list(pool.map(flush, list(paths)))


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


def utc_times(seconds: pd.Series | np.ndarray) -> pd.Series:
    """UTC date-times (``datetime64[ms, UTC]``, NaT where unknown) from Unix seconds: what the
    GeoPackage and GeoParquet layers store, so GIS software gets a DateTime field, not text.

    Notes
    -----
    UTC because the GeoPackage standard (1.2 onwards, "DATETIME": ISO 8601 ``YYYY-MM-DDTHH:MM:SS.SSSZ``)
    allows no other offset; QGIS and ArcGIS show the field in the viewer's own time zone setting.
    """
    s = pd.Series(np.asarray(seconds, dtype=float))
    return pd.to_datetime(s, unit="s", utc=True).astype("datetime64[ms, UTC]")


def village_table(results) -> pd.DataFrame:
    """The village scorecard: one row per village, plain columns (no geometry)."""
    v = results.villages
    levels = list(results.config.inputs.communes)
    cols = ["village_id", "name", *levels, "households", *(["source_of_households"] if "source_of_households" in v else []),
            *(["population"] if "population" in v else []),
            "area_km2", "share_covered", "share_weak", "share_no_4g", "share_dead", "share_unmeasured", "share_measured",
            "measured_km2", "evidence_share", "covered_of_measured", "verdict_4g", "households_in_dead_zones", "n_samples",
            "households_passed", "fibre_share", "meets_fibre_goal", "dist_to_fibre_m", "spur_length_m",
            "dist_to_planned_fibre_m", *(["fibre_subscribed", "subscribed_share"] if "subscribed_share" in v else [])]
    table = pd.DataFrame(v[cols]).copy()
    table["last_measured"] = format_time(v["t_last_s"].to_numpy(), results.config.study.timezone).to_numpy()
    return _round(table)


#: Columns of the fibre plan table (``fibre_plan.csv`` and the GeoPackage layer ``fibre_plan``).
FIBRE_PLAN_COLUMNS = ["village_id", "name", "unit", "households", "households_passed", "fibre_share", "households_gained",
                      "needs", "spur_length_m", "spur_straight_m", "spur_along", "cost_vnd", "cost_vnd_per_household",
                      "route_id", "route_operator", "in_district_plan", "in_unit_plan"]


def fibre_plan_table(results) -> pd.DataFrame:
    """The fibre plan per village below the goal (no geometry): the district's least-cost set first, then by cost per household."""
    spurs = results.fibre_plan.spurs
    table = _round(pd.DataFrame(spurs[FIBRE_PLAN_COLUMNS]))
    order = np.lexsort((table["cost_vnd_per_household"].fillna(np.inf).to_numpy(), ~table["in_district_plan"].to_numpy()))
    return table.iloc[order]


def fibre_plan_layer(results) -> gpd.GeoDataFrame:
    """The spur lines with their village's figures (villages that need no spur have no geometry)."""
    spurs = results.fibre_plan.spurs
    return gpd.GeoDataFrame(_round(pd.DataFrame(spurs[FIBRE_PLAN_COLUMNS])), geometry=spurs.geometry.to_numpy(),
                            crs=spurs.crs)


MEASUREMENT_PLAN_DIR = "measurement_plan"
GPX_NS = "http://www.topografix.com/GPX/1/1"


def measurement_waypoints_table(plan) -> pd.DataFrame:
    """The waypoints in visiting order with WGS84 coordinates and the village each serves."""
    wp = plan.waypoints
    wgs = wp.to_crs(4326)
    table = pd.DataFrame(wp.drop(columns="geometry"))
    table.insert(2, "lon", np.round(wgs.geometry.x.to_numpy(), 6) if len(wgs) else [])
    table.insert(3, "lat", np.round(wgs.geometry.y.to_numpy(), 6) if len(wgs) else [])
    return _round(table)


def gpx_day(plan, day: int, *, study: str) -> bytes:
    """One day of the measurement plan as GPX 1.1: its waypoints (in order) and its route as a track.

    Written as text, element by element, in the layout of ElementTree's ``indent`` and ``tostring``
    (a test compares the two): ElementTree took 0.1 s for the sample's five days, a tenth of the
    outputs. Texts are escaped, and the control characters XML 1.0 forbids are left out of them
    (a name holding one would make the whole file unreadable to a GPS application).
    """
    wp = plan.waypoints[plan.waypoints["day"] == day].to_crs(4326)
    out = ["<?xml version='1.0' encoding='utf-8'?>",
           f'<gpx xmlns="{GPX_NS}" version="1.1" creator="{_xml_attr(f"covgap {__version__}")}">',
           "  <metadata>", f"    <name>{_xml_text(f'{study}: measurement plan, day {day}')}</name>", "  </metadata>"]
    xs, ys = shapely.get_x(wp.geometry.to_numpy()), shapely.get_y(wp.geometry.to_numpy())
    columns = [wp[c].tolist() for c in ("seq", "name", "village_id", "unit", "households_in_cell", "cell")]
    for x, y, (seq, name, village, unit, households, cell) in zip(xs, ys, zip(*columns)):
        out += [f'  <wpt lat="{y:.7f}" lon="{x:.7f}">',
                f"    <name>{_xml_text(f'D{day}-{int(seq):03d} {name}')}</name>",
                f"    <desc>{_xml_text(f'village {village} {name} ({unit}); {households:g} households in cell {int(cell)}')}</desc>",
                "    <sym>Waypoint</sym>", "  </wpt>"]
    line = plan.days.loc[plan.days["day"] == day]
    line = line.to_crs(4326).geometry.iloc[0] if len(line) else None
    out += ["  <trk>", f"    <name>Day {day}</name>"]
    if line is not None and not line.is_empty:
        out.append("    <trkseg>")
        out += [f'      <trkpt lat="{y:.7f}" lon="{x:.7f}" />' for x, y in shapely.get_coordinates(line)]
        out.append("    </trkseg>")
    else:
        out.append("    <trkseg />")
    out += ["  </trk>", "</gpx>", ""]
    return "\n".join(out).encode("utf-8")


#: Characters XML 1.0 does not allow in a document: C0 controls other than tab, line feed and carriage return,
#: lone surrogates (they cannot be written as UTF-8 either), U+FFFE and U+FFFF.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """Element text for an XML file: ``&``, ``<``, ``>`` escaped, forbidden control characters left out."""
    return _XML_FORBIDDEN.sub("", text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml_attr(text: str) -> str:
    """An attribute value (in double quotes) for an XML file."""
    return _xml_text(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#09;")


def write_measurement_plan(results, folder: Path) -> list[Path]:
    """Write the measurement plan into ``folder``: ``day_NN.gpx`` per day, ``waypoints.csv``,
    ``villages.csv`` (the target villages and whether the drive would decide them), ``communes.csv``
    and ``summary.json``. Nothing when the run has no plan (no roads layer)."""
    plan = results.measurement_plan
    if plan is None:
        return []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for day in plan.days["day"]:
        path = folder / f"day_{int(day):02d}.gpx"
        path.write_bytes(gpx_day(plan, int(day), study=str(results.config.study.name)))
        written.append(path)
    for name, table in (("waypoints.csv", measurement_waypoints_table(plan)), ("villages.csv", _round(plan.villages)),
                        ("communes.csv", _round(plan.units)),
                        ("days.csv", _round(pd.DataFrame(plan.days.drop(columns="geometry"))))):
        write_csv(table, folder / name)
        written.append(folder / name)
    (folder / "summary.json").write_text(json.dumps(plan.summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    written.append(folder / "summary.json")
    return written


def _round(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for c in frame.columns:
        if c.startswith("share") or c.endswith("_share") or c == "covered_of_measured":
            frame[c] = frame[c].astype(float).round(4)
        elif c.endswith("_m") or c.endswith("_km2") or c.startswith("households_"):
            frame[c] = frame[c].astype(float).round(6 if c.endswith("_km2") else 1)
    return frame


def write_csv(frame: pd.DataFrame, path: Path, *, excel: bool = False) -> None:
    """UTF-8 CSV with a fixed float format and ``\\n`` line ends: same data, same bytes.

    ``excel``: start with a byte-order mark, so Excel opens the Vietnamese text as UTF-8 (without
    it Excel guesses the Windows code page and shows "NghÄ©a"); pandas, GDAL and QGIS read it too.
    """
    frame.to_csv(path, index=False, encoding="utf-8-sig" if excel else "utf-8", lineterminator="\n",
                 float_format="%.10g")


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
        "last_measured": utc_times(av["t_last_s"].to_numpy()).to_numpy(),
    })
    return gpd.GeoDataFrame(frame, geometry=grid.cell_boxes(frame["cell"].to_numpy()), crs=grid.crs)


def geopackage_layers(results) -> dict[str, gpd.GeoDataFrame | pd.DataFrame]:
    """Every layer of the run's GeoPackage, by layer name (working CRS); measurement times
    (``first_measured``, ``last_measured``) as UTC date-times (:func:`utc_times`)."""
    def with_times(zones: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        zones = zones.copy()
        zones["first_measured"] = utc_times(zones["t_first_s"].to_numpy()).to_numpy()
        zones["last_measured"] = utc_times(zones["t_last_s"].to_numpy()).to_numpy()
        return zones.drop(columns=["t_first_s", "t_last_s"])
    villages = gpd.GeoDataFrame(village_table(results).assign(last_measured=utc_times(results.villages["t_last_s"]).to_numpy()),
                                geometry=results.villages.geometry.to_numpy(), crs=results.villages.crs)
    communes = results.communes.drop(columns=["centre"])
    centres = gpd.GeoDataFrame(results.communes[["commune_id", "name", "centre_source", "centre_dist_to_fibre_m"]].assign(
        centre_reached=results.communes["communes_reached"].astype(bool)),
        geometry=gpd.GeoSeries(results.communes["centre"]).to_numpy(), crs=results.communes.crs)
    return {
        "villages": villages,
        "communes": gpd.GeoDataFrame(_round(pd.DataFrame(communes.drop(columns="geometry"))),
                                     geometry=communes.geometry.to_numpy(), crs=communes.crs),
        "commune_centres": centres,
        "dead_zones": with_times(results.zones),
        "dead_zone_operators": results.zone_operators,
        "no_4g_zones": with_times(results.no4g_zones),
        "no_4g_zone_operators": results.no4g_zone_operators,
        "operator_gap_zones": results.operator_zones,
        "needs_measurement": results.needs_measurement,
        "cells": cells_layer(results),
        "fibre_routes": results.layers.fibre_display,  # clipped for display (pipeline.Layers)
        "fibre_plan": fibre_plan_layer(results),
        **({"measurement_plan_days": results.measurement_plan.days,
            "measurement_plan_waypoints": results.measurement_plan.waypoints}
           if results.measurement_plan is not None else {}),
    }


@contextlib.contextmanager
def geopackage_writing(**options: str) -> Iterator[None]:
    """GDAL options for writing GeoPackages (``options``, e.g. ``OGR_CURRENT_DATE``), restored afterwards.

    SQLite does not wait for the disk at each layer (``OGR_SQLITE_SYNCHRONOUS=OFF``):
    every output is written into a temporary folder that :func:`atomic_output_dir`
    syncs to disk whole before it replaces the previous outputs, so the per-layer
    syncs (most of the time of writing a GeoPackage) bought nothing.
    """
    import pyogrio

    wanted = {"OGR_SQLITE_SYNCHRONOUS": "OFF", **options}
    previous = {k: pyogrio.get_gdal_config_option(k) for k in wanted}
    pyogrio.set_gdal_config_options(wanted)
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options(previous)


def write_geopackage(results, path: Path, *, layers: dict[str, gpd.GeoDataFrame | pd.DataFrame] | None = None) -> None:
    """Every layer of :func:`geopackage_layers` (or the ``layers`` given, already made) into one GeoPackage."""
    import pyogrio

    with geopackage_writing():
        for name, layer in (geopackage_layers(results) if layers is None else layers).items():
            if isinstance(layer, gpd.GeoDataFrame):
                layer.to_file(path, layer=name, driver="GPKG", engine="pyogrio")
            else:
                pyogrio.write_dataframe(pd.DataFrame(layer), path, layer=name, driver="GPKG")


GEOPARQUET_DIR = "geoparquet"


def write_geoparquet(results, folder: Path, *,
                     layers: dict[str, gpd.GeoDataFrame | pd.DataFrame] | None = None) -> list[Path]:
    """Every layer of the GeoPackage also as GeoParquet (``<folder>/<layer>.parquet``, WGS84 for the
    geometry layers), for notebooks and data tools that read Parquet (geopandas.read_parquet, DuckDB).
    ``layers``: :func:`geopackage_layers` of ``results`` when already made."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, layer in (geopackage_layers(results) if layers is None else layers).items():
        path = folder / f"{name}.parquet"
        if isinstance(layer, gpd.GeoDataFrame):
            layer.to_crs(4326).to_parquet(path, index=False)
        else:
            pd.DataFrame(layer).to_parquet(path, index=False)
        written.append(path)
    return written


# --------------------------------------------------------------------------- all of it
def write_outputs(results, folder: Path) -> list[Path]:
    """Write every output of a run into ``folder`` (which must exist and be empty)."""
    folder = Path(folder)
    written = []
    layers = geopackage_layers(results)  # made once, written twice
    write_geopackage(results, folder / GPKG_NAME, layers=layers)
    written.append(folder / GPKG_NAME)
    written += write_geoparquet(results, folder / GEOPARQUET_DIR, layers=layers)
    tables = {
        "scorecard_district.csv": results.scorecard_long,
        "scorecard_district_figures.csv": _round(results.district),
        "scorecard_communes.csv": _round(pd.DataFrame(results.communes.drop(columns=["geometry", "centre"]))),
        "scorecard_villages.csv": village_table(results),
        "measurement_files.csv": results.report.files,
        "fibre_plan.csv": fibre_plan_table(results),
        "fibre_plan_units.csv": _round(results.fibre_plan.units),
    }
    if results.report.write_rejected is None:
        tables["rejected_rows.csv"] = results.report.rejected.sort_values(["source_file", "source_row"], kind="mergesort")
    if results.changes is not None:  # what changed since the previous run (covgap refresh)
        tables["changes.csv"] = results.changes
    for name, table in tables.items():
        write_csv(table, folder / name, excel=name.startswith("scorecard_"))
        written.append(folder / name)
    if results.report.write_rejected is not None:  # streamed from the measurement store, never all in memory
        results.report.write_rejected(folder / "rejected_rows.csv")
        written.append(folder / "rejected_rows.csv")
    written += write_rasters(results, folder)
    written += write_measurement_plan(results, folder / MEASUREMENT_PLAN_DIR)
    from covgap import maps  # the display layers `covgap map` redraws the maps from

    layers_path = maps.write_map_layers(results, folder)
    written.append(layers_path)
    summary = run_summary(results)
    summary["map_layers_sha256"] = sha256_file(layers_path)  # what the maps must show (maps.maps_are_current)
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
        "fibre_plan": {k: (v.item() if hasattr(v, "item") else v) for k, v in results.fibre_plan.units.iloc[0].items()}
        if results.fibre_plan is not None else None,
        "measurement_plan": results.measurement_plan.summary if results.measurement_plan is not None else None,
        "measurement_files": results.report.files.loc[results.report.files["status"] != "refused", "file"].tolist(),
    }
