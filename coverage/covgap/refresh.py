"""Take measurement files into the store and rebuild every output from it, atomically.

One function, :func:`update_outputs`, serves both commands:

* ``covgap run`` (``full_rebuild=True``): a new, empty store; every configured
  measurement file is read.
* ``covgap refresh`` (``full_rebuild=False``): the store of the previous run is kept;
  only files whose SHA-256 it does not hold are read, and their cell statistics
  merge with the stored total (cellstats.merge_stats is exact), so the result
  equals a full rebuild from all the files.

Everything (store and outputs) is written into the temporary folder of
:func:`covgap.outputs.atomic_output_dir` and swapped in whole at the end; the
caller holds :func:`covgap.outputs.output_lock`. See docs/refresh.md.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from covgap import cellstats, dedupe, ingest, measurements as meas, outputs, pipeline, store as store_mod
from covgap.config import Config, EngineConfig
from covgap.errors import InputError
from covgap.forked import Forked
from covgap.store import FileRecord, Store, StoreError

log = logging.getLogger(__name__)

CHANGE_COLUMNS = ["kind", "id", "name", "change", "detail"]

ProgressFactory = ingest.ProgressFactory


@dataclass
class FileOutcome:
    """What happened to one file of the batch."""

    path: Path
    sha256: str
    status: str  # "taken" | "would take" | "skipped" | "refused"
    message: str = ""
    record: FileRecord | None = None
    traceback: str = ""  # refused for an internal error: what went wrong, for errors.log
    stats: pd.DataFrame | None = None  # a taken file's statistics when kept in memory (else in the store)


@dataclass
class RefreshOutcome:
    """The result of :func:`update_outputs`: per-file outcomes, the new store, the results."""

    files: list[FileOutcome]
    store: Store
    full_rebuild: bool
    dry_run: bool
    results: pipeline.Results | None = None  # None when the outputs were left as they were
    compared: bool = False  # a previous run's outputs existed to compare with
    changes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CHANGE_COLUMNS))

    def with_status(self, *status: str) -> list[FileOutcome]:
        return [f for f in self.files if f.status in status]

    @property
    def updated(self) -> bool:
        return self.results is not None

    def batch_counts(self) -> dict[str, int]:
        """Rows read / used / rejected (and by reason) of the files taken in (or that would be)."""
        recs = [f.record for f in self.with_status("taken", "would take") if f.record]
        out = {"rows_read": sum(r.rows_read for r in recs), "rows_used": sum(r.rows_used for r in recs),
               "rows_rejected": sum(r.rows_rejected for r in recs)}
        for reason in meas.REJECT_REASONS:
            k = sum(int(r.rejected_by_reason.get(reason, 0)) for r in recs)
            if k:
                out[reason] = k
        return out


@dataclass
class Prepared:
    """A configuration's layers and the analysis' layer side, loaded and worked out once for the refreshes that
    follow (``covgap watch``; :func:`update_outputs`)."""

    layers: pipeline.Layers
    side: pipeline.LayerSide


def prepare(config: Config) -> Prepared:
    """The layers of ``config`` and what the analysis works out of them alone (:func:`covgap.pipeline.layer_side`).

    The compiled parser (covgap.fastparse) is loaded too: a process that keeps it reads every file with it,
    a small one too (a 1 % file onto 2·10⁷ rows: 0.24 s → 0.11 s), without paying its load at each refresh.
    """
    from covgap import fastparse

    fastparse.compiled()
    layers = pipeline.load_layers(config)
    return Prepared(layers=layers, side=pipeline.layer_side(layers, config))


class _NothingNew(Exception):
    """Raised inside the temporary folder to abandon it: no file was taken in."""


# --------------------------------------------------------------------------- the command
def update_outputs(
    config: Config,
    paths: Iterable[Path] | None = None,
    *,
    full_rebuild: bool,
    dry_run: bool = False,
    write_products: Callable[[pipeline.Results, Path], object] | None = None,
    now_s: float | None = None,
    progress: ProgressFactory | None = None,
    chunk_rows: int | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    prepared: Prepared | None = None,
) -> RefreshOutcome:
    """Take measurement files into the store and rewrite every output (caller holds the output lock).

    Parameters
    ----------
    config
        The project configuration; outputs and store go to ``config.output.dir``.
    paths
        Measurement files or folders; default: ``[inputs] measurements`` of the configuration.
    full_rebuild
        Start from an empty store (``covgap run``) instead of the stored one (``covgap refresh``).
    dry_run
        Read and check the new files, report what would happen, write nothing.
    write_products
        ``write_products(results, folder)`` writes every output into the temporary
        folder (default: :func:`covgap.outputs.write_outputs`).
    now_s
        The clock for future timestamps (default: now).
    progress
        Progress-bar factory for large files.
    overwrite
        Replace an output folder that covgap did not make (``--overwrite``); never one
        that is, contains or lies inside an input.
    chunk_rows, workers
        Lines per block at most (default: blocks of covgap.blocks.BLOCK_BYTES) and worker
        processes for large files (default: ``[engine] workers``, else the cores available; covgap.ingest.Batch).
        The engine (local or dask) is ``config.engine``.
    prepared
        The layers and the analysis' layer side of ``config``, worked out beforehand (:func:`prepare`:
        ``covgap watch``); by default they are loaded, and worked out beside the reading.

    Returns
    -------
    RefreshOutcome
        ``results`` is None when nothing was written (dry run, or no new file on a refresh).

    Raises
    ------
    StoreError
        The stored statistics were built on another grid or study area, or are damaged.
    InputError
        No measurement file found, or (on a full rebuild) none could be used.
    OutputError
        The output folder is, contains or lies inside an input, or holds files covgap
        did not write (without ``overwrite``); checked before anything is read.
    """
    out_dir = Path(config.output.dir)
    inputs = outputs.input_paths(config, list(paths or ()))
    outputs.check_clear_of_inputs(out_dir, inputs, label="output folder")
    outputs.check_replaceable(out_dir, overwrite=overwrite)
    write = write_products or outputs.write_outputs
    if not dry_run:
        outputs.recover_output_dir(out_dir)
    # Only a folder covgap made holds a store and outputs to build on; another one (empty, or
    # replaced with --overwrite) is not read at all.
    owned = outputs.is_owned(out_dir)
    layers = prepared.layers if prepared is not None else pipeline.load_layers(config)
    current = store_mod.fingerprint(layers, config)
    old_folder = store_mod.store_dir(out_dir)
    store = _open_store(out_dir, current, full_rebuild=full_rebuild or not owned)
    files = meas.list_measurement_files(list(paths) if paths else list(config.inputs.measurements))
    if not files and not full_rebuild:
        if paths:
            raise InputError(Path(next(iter(paths))), ["no measurement files (*.csv, *.txt, *.tsv, *.csv.gz) found in the path(s) given"])
        if not config.inputs.measurements:
            raise InputError(config.source or Path("covgap.toml"),
                             ["[inputs] measurements = [] names no measurement file or folder: give the files to take in "
                              "(covgap refresh FILES...) or name them in [inputs] measurements, e.g. measurements = ['measurements']"])
        raise InputError(Path(config.inputs.measurements[0]),
                         ["no measurement files (*.csv, *.txt, *.tsv, *.csv.gz) found; add some or fix [inputs] measurements"])
    if not files:  # DESIGN.md §3.7: the fibre targets need no measurement; the signal targets say so
        log.warning("no measurement files found%s: the signal targets have no evidence yet; fibre outputs are complete",
                    "" if config.inputs.measurements or paths else " ([inputs] measurements = [] names none)")
    ctx = ingest.read_context(layers, config, now_s=now_s)

    if dry_run:
        checked = _ingest_batch(files, store, layers, ctx, folder=None, progress=progress, chunk_rows=chunk_rows,
                                workers=workers, engine=config.engine)
        return RefreshOutcome(files=checked, store=store, full_rebuild=full_rebuild, dry_run=True)

    outcomes: list[FileOutcome] = []
    try:
        # What the analysis needs of the layers alone is worked out meanwhile by a forked child
        # (pipeline.start_layer_side), stopped with the rest when the refresh fails or finds nothing new.
        with (pipeline.ReadyLayerSide(prepared.side) if prepared is not None else pipeline.start_layer_side(layers, config)
              as early,
              outputs.atomic_output_dir(out_dir, overwrite=overwrite, inputs=inputs) as tmp):
            new_folder = store_mod.store_dir(tmp)
            new_folder.mkdir()
            if not full_rebuild and owned and (old_folder / store_mod.MANIFEST).exists():
                store_mod.link_immutable_files(old_folder, new_folder)
            unwritten = ingest.Unwritten()
            outcomes = _ingest_batch(files, store, layers, ctx, folder=new_folder, progress=progress,
                                     chunk_rows=chunk_rows, workers=workers, engine=config.engine, unwritten=unwritten)
            _write_errors_log(outcomes, tmp)
            taken = [o for o in outcomes if o.status == "taken"]
            if not taken and files:
                if full_rebuild:
                    refused = [o for o in outcomes if o.status == "refused"]
                    raise InputError(files[0].parent if len(files) > 1 else files[0],
                                     ["no measurement file could be used: " + "; ".join(o.message for o in refused)]
                                     if refused else ["every measurement file is a copy of another"])
                raise _NothingNew
            store.total = _merged_total(store.total, [o.stats if o.stats is not None else new_folder / o.record.stats_file
                                                      for o in taken if o.record is not None])
            # The store's files are written by a forked child while this process analyses: the analysis needs the
            # statistics in memory only (0.3 s of each run at 2·10⁷ rows, docs/benchmark.md).
            with Forked(_write_store, store, new_folder, unwritten, inline=pipeline.one_process(config)) as storing:
                results = analyse_store(store, new_folder, layers, config, early=early,
                                        refused=[(o.path.name, o.message) for o in outcomes if o.status == "refused"])
                compared = owned and (out_dir / outputs.GPKG_NAME).is_file()
                # None on a first run: nothing to compare with is not the same as "no change".
                results.changes = compare_with_previous(out_dir, results) if compared else None
                storing.result()
            write(results, tmp)
    except _NothingNew:
        return RefreshOutcome(files=outcomes, store=store, full_rebuild=full_rebuild, dry_run=False)
    return RefreshOutcome(files=outcomes, store=store, full_rebuild=full_rebuild, dry_run=False,
                          results=results, compared=compared,
                          changes=results.changes if results.changes is not None else pd.DataFrame(columns=CHANGE_COLUMNS))


#: Statistics rows merged at once: many small files merge in a few steps (merging each into the growing total
#: was quadratic: 12 s for 200 files of 1,000 rows), large ones still one or two at a time (bounded memory).
MERGE_ROWS = 2_000_000


def _merged_total(total: pd.DataFrame, parts: list[pd.DataFrame | Path]) -> pd.DataFrame:
    """``total`` merged with the statistics given or in the files at ``parts``, in groups of about
    :data:`MERGE_ROWS` rows."""
    group: list[pd.DataFrame] = []
    rows = 0
    for part in parts:
        stats = part if isinstance(part, pd.DataFrame) else store_mod.read_stats(part)
        group.append(stats)
        rows += len(stats)
        if rows >= MERGE_ROWS:
            total = cellstats.merge_stats(total, *group)
            group, rows = [], 0
    return cellstats.merge_stats(total, *group) if group else total


def _write_store(store: Store, folder: Path, unwritten: ingest.Unwritten) -> None:
    """What the batch left unwritten (statistics, duplicate rows), then the total and the manifest
    (:func:`covgap.store.save_store`)."""
    unwritten.write(folder)
    store_mod.save_store(store, folder)


def _open_store(out_dir: Path, current: dict, *, full_rebuild: bool) -> Store:
    folder = store_mod.store_dir(out_dir)
    if full_rebuild:
        return Store(fingerprint=current)
    if (folder / store_mod.MANIFEST).exists():
        store = store_mod.load_store(folder)
        store_mod.check_compatible(store, current, folder)
        return store
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise StoreError(f"{out_dir}: holds outputs but no measurement store (made by an older covgap?); "
                         "run `covgap run` once to build the store, then refresh")
    return Store(fingerprint=current)


def analyse_store(store: Store, folder: Path, layers: pipeline.Layers, config: Config, *,
                  refused: Iterable[tuple[str, str]] = (), early=None) -> pipeline.Results:
    """Run the (pure) analysis on the stored total; the report comes from the manifest.

    ``refused``: ``(file name, reason)`` of the files of this batch that could not be
    used; they are listed in the report (``measurement_files.csv``) with status ``refused``.
    ``early``: the analysis' layer side started beforehand (:func:`covgap.pipeline.start_layer_side`).
    """
    report = pipeline.ReadReport(
        files=store_mod.report_frame(store.files, refused),
        paths=[Path(f.path) for f in store.files],
        sha256={f.path: f.sha256 for f in store.files},
        write_rejected=lambda dest: store_mod.write_rejected_rows(store, folder, dest),
    )
    return pipeline.analyse(layers, store.total, config, report, early=early)


# --------------------------------------------------------------------------- reading files
def _ingest_batch(files: list[Path], store: Store, layers: pipeline.Layers, ctx: meas.ReadContext, *,
                  folder: Path | None, progress: ProgressFactory | None, chunk_rows: int | None,
                  workers: int | None = None, engine: EngineConfig | None = None,
                  unwritten: ingest.Unwritten | None = None) -> list[FileOutcome]:
    """Hash, skip, read or refuse each file, then find the duplicates of the batch and of the store.

    Taken files are appended to ``store.files``; with a ``folder``, their statistics,
    rejected rows and the new row keys (``row_keys/``) are written there; but with ``unwritten``, the
    statistics kept in memory and the duplicate rows taken out by this process are put in it instead
    (:meth:`covgap.ingest.Batch.finish`), for the caller to write.
    """
    outcomes: list[FileOutcome | None] = []  # None: being read, filled in file order
    batch: dict[str, Path] = {}
    reading: deque[tuple[int, str | None]] = deque()  # (place in outcomes, sha256) of each file given to the reader
    sizes = Counter(_size(path) for path in files)
    stored_sizes = {r.size_bytes for r in store.files}

    def to_read():
        """Hash, skip or refuse each file; yield those to read (the reader takes them a few files ahead).

        A file whose size no other file of the batch and none taken in has is new whatever its
        content: the reader hashes it while reading it (one pass over its bytes, beside the reading
        processes) instead of before."""
        for path in files:
            size = _size(path)
            if size is not None and sizes[size] == 1 and size not in stored_sizes:
                reading.append((len(outcomes), None))
                outcomes.append(None)
                yield path, None
                continue
            try:
                sha = outputs.sha256_file(path)
            except OSError as err:
                outcomes.append(FileOutcome(path, "", "refused", f"{path}: cannot be read: {err}"))
                log.warning("refused %s: cannot be read: %s", path, err)
                continue
            known = store.find(sha)
            if known is not None:
                outcomes.append(FileOutcome(path, sha, "skipped", f"already taken in as {known.name} (same SHA-256)"))
                log.info("skipped %s: already taken in as %s (same content)", path.name, known.name)
                continue
            if sha in batch:
                outcomes.append(FileOutcome(path, sha, "skipped", f"same content as {batch[sha].name} in this batch"))
                log.info("skipped %s: same content as %s", path.name, batch[sha].name)
                continue
            batch[sha] = path
            reading.append((len(outcomes), sha))
            outcomes.append(None)
            yield path, sha

    with ingest.Batch(layers, ctx, folder=folder, stored_keys=dedupe.StoredKeys(store.keys_dir), progress=progress,
                      chunk_rows=chunk_rows, workers=workers, engine=engine) as reader:
        for path, got in reader.add_files(to_read()):
            at, sha = reading.popleft()
            if sha is None:  # hashed by the reader
                sha = got.sha256 if isinstance(got, FileRecord) else _sha256_or_empty(path)
            if isinstance(got, InputError):
                outcomes[at] = FileOutcome(path, sha, "refused", str(got))
                log.warning("refused %s", got)
            elif isinstance(got, Exception):  # a bug on this file: refuse it with its traceback and read the others
                message, trace = ingest.internal_error_reason(path, got)
                outcomes[at] = FileOutcome(path, sha, "refused", message, traceback=trace)
                log.warning("refused %s", message)
                log.debug("%s", trace)
            else:
                outcomes[at] = FileOutcome(path, sha, "would take" if folder is None else "taken", record=got)
        reader.finish(keys_folder=folder / store_mod.KEYS_DIR if folder is not None else None, unwritten=unwritten)
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(outcomes), "the reader answers for every file it is given"
        kept = {t.record.sha256: t.stats for t in reader.taken}
        for o in done:
            if o.record is not None:
                o.stats = kept.get(o.record.sha256)
    if folder is not None:
        store.files += [o.record for o in done if o.status == "taken" and o.record is not None]
    return done


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:  # refused when it is read
        return None


def _sha256_or_empty(path: Path) -> str:
    try:
        return outputs.sha256_file(path)
    except OSError:
        return ""


def _write_errors_log(outcomes: list[FileOutcome], folder: Path) -> None:
    """The tracebacks of the files refused for an internal error, into ``errors.log`` of the output folder."""
    traces = [o.traceback for o in outcomes if o.traceback]
    if traces:
        (folder / ingest.ERRORS_LOG).write_text("\n".join(traces), encoding="utf-8")


# --------------------------------------------------------------------------- what changed
def compare_with_previous(previous_dir: Path, results: pipeline.Results) -> pd.DataFrame:
    """What changed since the outputs in ``previous_dir``: dead zones and village targets.

    Dead zones are matched by overlap (area > 1 m²), not by id (ids are renumbered by
    area at every run). A new zone overlapping no old one is *opened*; an old zone
    overlapping no new one is *closed*; a new zone whose area differs from the union
    of the old zones it overlaps has *grown* or *shrunk* (the detail says when zones
    merged). Villages: the 4G verdict and the fibre goal, *now meets* / *no longer meets*.

    Returns an empty frame (columns ``kind, id, name, change, detail``) on a first run.
    """
    previous_dir = Path(previous_dir)
    gpkg = previous_dir / outputs.GPKG_NAME
    village_csv = previous_dir / "scorecard_villages.csv"
    rows: list[dict] = []
    if gpkg.is_file():
        rows += _zone_changes(gpkg, results)
    if village_csv.is_file():
        rows += _village_changes(village_csv, results)
    frame = pd.DataFrame(rows, columns=CHANGE_COLUMNS)
    order = {"opened": 0, "grown": 1, "shrunk": 2, "closed": 3}
    if len(frame):
        frame = frame.assign(_k=frame["kind"].map({"dead_zone": 0, "village": 1}),
                             _c=frame["change"].map(order).fillna(9))
        frame = frame.sort_values(["_k", "_c", "id", "change"], kind="mergesort").drop(columns=["_k", "_c"])
    return frame.reset_index(drop=True)


def _zone_changes(gpkg: Path, results: pipeline.Results) -> list[dict]:
    import pyogrio

    try:
        old = pyogrio.read_dataframe(gpkg, layer="dead_zones")
    except Exception as err:  # an unreadable previous output must not stop the refresh
        log.warning("cannot compare dead zones with the previous run (%s): %s", gpkg, err)
        return []
    if len(old) and old.crs is not None and old.crs != results.layers.crs:
        old = old.to_crs(results.layers.crs)
    new = results.zones
    old_geoms = old.geometry.to_numpy() if len(old) else np.empty(0, dtype=object)
    new_geoms = new.geometry.to_numpy() if len(new) else np.empty(0, dtype=object)
    overlap = np.zeros((len(new_geoms), len(old_geoms)), dtype=bool)
    if len(old_geoms) and len(new_geoms):
        tree = shapely.STRtree(old_geoms)
        pairs = tree.query(new_geoms, predicate="intersects")
        for i, j in zip(*pairs):
            overlap[i, j] = shapely.intersection(new_geoms[i], old_geoms[j]).area > 1.0
    rows = []
    for i in range(len(new_geoms)):
        z = new.iloc[i]
        js = np.flatnonzero(overlap[i])
        area = float(z["area_km2"])
        names = str(z.get("villages", "") or "")
        if not len(js):
            rows.append({"kind": "dead_zone", "id": z["zone_id"], "name": names, "change": "opened",
                         "detail": f"{area:.4f} km², {float(z.get('households', 0) or 0):.0f} households"})
            continue
        before = float(shapely.union_all(old_geoms[js]).area) / 1e6
        ids = ", ".join(str(old.iloc[j]["zone_id"]) for j in js)
        merged = f"; merged from {len(js)} zones" if len(js) > 1 else ""
        if area > before + 1e-6:
            change = "grown"
        elif area < before - 1e-6:
            change = "shrunk"
        else:
            continue
        rows.append({"kind": "dead_zone", "id": z["zone_id"], "name": names, "change": change,
                     "detail": f"{before:.4f} → {area:.4f} km² (was {ids}){merged}"})
    for j in np.flatnonzero(~overlap.any(axis=0)) if len(old_geoms) else []:
        z = old.iloc[j]
        rows.append({"kind": "dead_zone", "id": z["zone_id"], "name": str(z.get("villages", "") or ""),
                     "change": "closed", "detail": f"{float(z['area_km2']):.4f} km² no longer dead (previous id)"})
    return rows


def _village_changes(village_csv: Path, results: pipeline.Results) -> list[dict]:
    old = pd.read_csv(village_csv, dtype={"village_id": str}, keep_default_na=False)
    new = outputs.village_table(results)
    new = new.assign(village_id=new["village_id"].astype(str))
    both = new.merge(old, on="village_id", how="inner", suffixes=("", "_old"))
    rows = []
    for _, v in both.iterrows():
        was, now = str(v["verdict_4g_old"]), str(v["verdict_4g"])
        if (was == "meets") != (now == "meets"):
            rows.append({"kind": "village", "id": v["village_id"], "name": v["name"],
                         "change": "now meets 4G target" if now == "meets" else "no longer meets 4G target",
                         "detail": f"4G verdict {was} → {now}"})
        f_was, f_now = _truthy(v["meets_fibre_goal_old"]), _truthy(v["meets_fibre_goal"])
        if f_was != f_now:
            rows.append({"kind": "village", "id": v["village_id"], "name": v["name"],
                         "change": "now meets fibre goal" if f_now else "no longer meets fibre goal",
                         "detail": f"households passed {float(v['fibre_share_old'] or 0):.0%} → {float(v['fibre_share']):.0%}"})
    return rows


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


# --------------------------------------------------------------------------- summary
def summary_lines(outcome: RefreshOutcome, out_dir: Path) -> list[str]:
    """The closing summary: files, rows by reason, what changed."""
    lines = []
    verb = "would take in" if outcome.dry_run else "taken in"
    taken = outcome.with_status("taken", "would take")
    skipped = outcome.with_status("skipped")
    refused = outcome.with_status("refused")
    for o in taken:
        r = o.record
        assert r is not None  # a taken file always has its record
        lines.append(f"  {verb}: {o.path.name} ({r.format}): {r.rows_read} rows, {r.rows_used} used, "
                     f"{r.rows_rejected} rejected")
    for o in skipped:
        lines.append(f"  skipped: {o.path.name}: {o.message}")
    for o in refused:
        lines.append(f"  refused: {o.message}")
    lines.append(f"Files: {len(taken)} {verb}, {len(skipped)} skipped, {len(refused)} refused")
    counts = outcome.batch_counts()
    reasons = ", ".join(f"{k} {v}" for k, v in counts.items() if k in meas.REJECT_REASONS) or "none"
    lines.append(f"Rows of these files: {counts['rows_read']} read, {counts['rows_used']} used, "
                 f"{counts['rows_rejected']} rejected ({reasons})")
    if taken and not outcome.dry_run:
        lines.append(f"Rejected rows with their reasons: {store_mod.store_dir(out_dir) / store_mod.REJECTED_DIR}/")
    if outcome.dry_run:
        lines.append("Dry run: nothing was changed.")
    elif not outcome.updated:
        lines.append(f"Nothing new to take in; {out_dir} is unchanged.")
    else:
        store = outcome.store
        lines.append(f"Store: {len(store.files)} files, {sum(f.rows_used for f in store.files)} rows used in all")
        if not store.files:
            lines.append("No measurements yet: the 4G and dead-zone targets have no evidence ('insufficient evidence'); "
                         "the fibre targets are complete. Add drive-test or phone CSVs and run `covgap refresh`.")
        ch = outcome.changes
        if not outcome.compared:
            lines.append("Changes since the previous run: none (no previous outputs to compare with)")
        elif ch is None or ch.empty:
            lines.append("Changes since the previous run: none")
        else:
            lines.append(f"Changes since the previous run ({len(ch)}; also in {out_dir / 'changes.csv'}):")
            for _, c in ch.iterrows():
                label = f"dead zone {c['id']}" if c["kind"] == "dead_zone" else f"village {c['id']} {c['name']}"
                lines.append(f"  {label}: {c['change']} ({c['detail']})")
    return lines
