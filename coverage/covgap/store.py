"""The measurement store: what every ingested file contributed, kept with the outputs.

Layout (``<output dir>/store/``; see docs/refresh.md for why)::

    manifest.json            one record per ingested file: SHA-256, size, format,
                             rows read / used / rejected by reason, its files below
    cells_total.parquet      merged cell statistics of every file (cellstats.STAT_COLUMNS)
    row_keys/<pp>.npy        sorted uint64 keys of every used row, in 64 partitions, and the sorted
    row_keys/<pp>-<nnn>.npy  runs each refresh added (covgap.dedupe.StoredKeys)
    stats/<sha16>.parquet    the cell statistics of one file
    rejected/<sha12>_<name>.csv   every rejected row of one file with its reason

The store lives inside the output folder, which is replaced whole by
:func:`covgap.outputs.atomic_output_dir`, so the store and the outputs always
change together. Files under ``stats/`` and ``rejected/`` never change once
written, so a refresh hard-links them into the new folder instead of copying.
``manifest.json`` and ``cells_total.parquet`` are written anew; ``row_keys/`` gets one new
run per partition (the earlier files are hard-linked).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from typing import TextIO
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from covgap import cellstats
from covgap.errors import CovgapError
from covgap.measurements import REJECT_REASONS

log = logging.getLogger(__name__)

STORE_DIRNAME = "store"
MANIFEST = "manifest.json"
TOTAL = "cells_total.parquet"
#: The sorted keys of every used row, one file per partition (covgap.dedupe.StoredKeys).
KEYS_DIR = "row_keys"
STATS_DIR = "stats"
REJECTED_DIR = "rejected"
#: 2: row keys partitioned in ``row_keys/`` (version 1 kept them in one array); 3: a refresh adds its keys
#: as sorted runs (``<pp>-<nnn>.npy``). A version-2 store is a version-3 store without runs: read as it is.
STORE_VERSION = 3
READABLE_VERSIONS = (2, 3)
REJECTED_COLUMNS = ["source_file", "source_row", "reason", "detail", "raw_fields"]


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex (streamed: any size)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class StoreError(CovgapError):
    """The measurement store is missing, damaged or was built with other settings."""


@dataclass
class FileRecord:
    """One ingested measurement file."""

    sha256: str
    name: str
    path: str
    size_bytes: int
    format: str
    rows_read: int
    rows_used: int
    rows_rejected: int
    rejected_by_reason: dict = field(default_factory=dict)
    stats_file: str = ""
    rejected_file: str = ""

    def report_row(self) -> dict:
        """The row of ``measurement_files.csv`` (pipeline.ReadReport.files)."""
        return {"file": self.name, "format": self.format, "status": "taken", "rows_read": self.rows_read,
                "rows_used": self.rows_used, "rows_rejected": self.rows_rejected,
                **{r: int(self.rejected_by_reason.get(r, 0)) for r in REJECT_REASONS}, "refused_reason": ""}


@dataclass
class Store:
    """The store in memory: settings fingerprint, file records, merged statistics, and where its row keys are."""

    fingerprint: dict
    files: list[FileRecord] = field(default_factory=list)
    total: pd.DataFrame = field(default_factory=cellstats.empty_stats)
    keys_dir: Path | None = None  # row_keys/ of the store read (None: a new store, no key yet)

    def find(self, sha256: str) -> FileRecord | None:
        return next((f for f in self.files if f.sha256 == sha256), None)

    def report_files(self) -> pd.DataFrame:
        return report_frame(self.files)


#: The columns of ``measurement_files.csv``: one row per file taken in or refused.
REPORT_COLUMNS = ["file", "format", "status", "rows_read", "rows_used", "rows_rejected", *REJECT_REASONS,
                  "refused_reason"]


def report_frame(records: list[FileRecord], refused: Iterable[tuple[str, str]] = ()) -> pd.DataFrame:
    """One row per file: rows read, used, rejected, and rejected by reason (measurement_files.csv).

    ``refused`` adds the files that could not be used, as ``(name, reason)``:
    status ``refused``, no rows, and the reason (the message naming the file and the fix).
    """
    rows = [f.report_row() for f in records]
    for name, reason in refused:
        rows.append({"file": name, "format": "", "status": "refused", "rows_read": 0, "rows_used": 0,
                     "rows_rejected": 0, **{r: 0 for r in REJECT_REASONS}, "refused_reason": reason})
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def store_dir(out_dir: Path) -> Path:
    return Path(out_dir) / STORE_DIRNAME


def fingerprint(layers, config) -> dict:
    """What the stored statistics depend on besides the files: grid, study area, reading defaults.

    A store built with another fingerprint cannot be merged into; ``covgap run``
    rebuilds it from the measurement files.
    """
    g = layers.grid
    import shapely

    area_hash = hashlib.sha256(shapely.to_wkb(shapely.normalize(layers.study_area), output_dimension=2)).hexdigest()[:16]
    inputs = config.inputs
    return {
        "crs": layers.crs.to_string(),
        "grid": [round(float(g.x0), 6), round(float(g.y0), 6), int(g.nrows), int(g.ncols), float(g.size)],
        "study_area_sha256": area_hash,
        "timezone": config.study.timezone,
        "default_technology": inputs.default_technology,
        "default_operator": inputs.default_operator,
        "columns": asdict(inputs.columns),
    }


def load_store(folder: Path) -> Store:
    """Read a store folder. Raises :class:`StoreError` if it is damaged."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("version") not in READABLE_VERSIONS:
            raise StoreError(f"{folder}: store version {manifest.get('version')} is not {STORE_VERSION}; "
                             "run `covgap run` to rebuild it from the measurement files")
        files = [FileRecord(**rec) for rec in manifest["files"]]
        total = read_stats(folder / TOTAL)
        if not (folder / KEYS_DIR).is_dir():
            raise ValueError(f"{KEYS_DIR}/ is missing")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StoreError(f"{folder}: the measurement store is damaged ({err}); "
                         "run `covgap run` to rebuild it from the measurement files") from err
    return Store(fingerprint=manifest["fingerprint"], files=files, total=total, keys_dir=folder / KEYS_DIR)


def check_compatible(store: Store, current: dict, folder: Path) -> None:
    """Refuse to merge into a store built on another grid, study area or reading defaults."""
    diff = [k for k in sorted(set(store.fingerprint) | set(current)) if store.fingerprint.get(k) != current.get(k)]
    if diff:
        raise StoreError(f"{folder}: the measurement store was built with other settings ({', '.join(diff)} changed); "
                         "run `covgap run` to rebuild it from the configured measurement files")


def link_immutable_files(old: Path, new: Path) -> int:
    """Hard-link (or copy, across file systems) the per-file statistics and rejected rows of ``old`` into ``new``."""
    n = 0
    for sub in (STATS_DIR, REJECTED_DIR):
        (new / sub).mkdir(parents=True, exist_ok=True)
        src = old / sub
        if not src.is_dir():
            continue
        for path in sorted(src.iterdir()):
            dest = new / sub / path.name
            try:
                os.link(path, dest)
            except OSError:
                shutil.copy2(path, dest)
            n += 1
    return n


def file_stats_path(sha256: str) -> str:
    """Where a file's statistics are, relative to the store."""
    return f"{STATS_DIR}/{sha256[:16]}.parquet"


def write_file_stats(stats: pd.DataFrame, folder: Path, sha256: str) -> str:
    """Write one file's statistics under ``stats/``; returns the path relative to the store."""
    rel = file_stats_path(sha256)
    (folder / STATS_DIR).mkdir(parents=True, exist_ok=True)
    _write_parquet(stats, folder / rel)
    return rel


def save_store(store: Store, folder: Path) -> None:
    """Write the total and (last) the manifest into ``folder`` (the engine writes ``row_keys/``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / KEYS_DIR).mkdir(exist_ok=True)
    _write_parquet(store.total, folder / TOTAL)
    manifest = {"version": STORE_VERSION, "fingerprint": store.fingerprint, "files": [asdict(f) for f in store.files]}
    (folder / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    frame.reset_index(drop=True).to_parquet(path, index=False, compression="zstd")


def read_stats(path: Path) -> pd.DataFrame:
    """Cell statistics written by this module (already in cellstats' canonical order).

    Arrow memory is released column by column as pandas takes it over, and the
    string columns become object columns as cellstats builds them.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    stats = table.to_pandas(self_destruct=True)
    del table
    if stats.empty:
        return cellstats.empty_stats()
    for c in ("operator", "technology"):
        stats[c] = stats[c].astype(object)
    return stats[cellstats.STAT_COLUMNS]


class RejectedWriter:
    """Streams one file's rejected rows to ``rejected/<sha12>_<name>.csv`` as they come.

    The file is created on the first rejected row only; :attr:`rel_path` is empty
    when no row was rejected.
    """

    def __init__(self, folder: Path, sha256: str | None, name: str):
        self.folder = folder
        self._name = name
        # Without the SHA-256 yet (a file hashed while it is read), a temporary name in the batch's
        # own folder until :meth:`name_by` gives the file its name.
        self._rel = rejected_path(sha256, name) if sha256 is not None else f"{REJECTED_DIR}/.reading-{uuid.uuid4().hex}.csv"
        self.path = folder / self._rel
        self._fh: TextIO | None = None
        self._created = False  # this writer made self.path (the only file discard() may delete)
        self.rows = 0

    def name_by(self, sha256: str) -> None:
        """Give the rows written so far (under a temporary name) the file's name, once its SHA-256 is known."""
        self.close()
        rel = rejected_path(sha256, self._name)
        if self._created:
            final = self.folder / rel
            if final.exists():  # two files of one content are never both taken in: not covgap's file to replace
                raise FileExistsError(f"{final} exists already")
            os.rename(self.path, final)
            self.path = final
        else:
            self.path = self.folder / rel
        self._rel = rel

    @property
    def rel_path(self) -> str:
        return self._rel if self.rows else ""

    def write(self, rejected: pd.DataFrame) -> None:
        if rejected.empty:
            return
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "x", encoding="utf-8", newline="")
            self._created = True
            self._fh.write(",".join(REJECTED_COLUMNS) + "\n")
        rejected[REJECTED_COLUMNS].to_csv(self._fh, header=False, index=False, lineterminator="\n",
                                          float_format="%.10g")
        self.rows += len(rejected)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def discard(self) -> None:
        """Remove the file this writer created (a refused file's partial rejected rows), nothing else."""
        self.close()
        if self._created:
            self.path.unlink(missing_ok=True)
            self._created = False
        self.rows = 0


def rejected_path(sha256: str, name: str) -> str:
    """Where (relative to the store) the rejected rows of the file ``name`` of this SHA-256 are written."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
    rel = f"{REJECTED_DIR}/{sha256[:12]}_{safe}"
    return rel if rel.lower().endswith(".csv") else rel + ".csv"


def add_rejected_rows(folder: Path, sha256: str, name: str, rel_path: str, rows: pd.DataFrame) -> str:
    """Add rows to a file's rejected rows (made if it has none), keeping them in line order; returns its path."""
    if rows.empty:
        return rel_path
    writer = RejectedWriter(folder, sha256, name)
    path = folder / (rel_path or rejected_path(sha256, name))
    if rel_path:
        old = pd.read_csv(path, dtype={"source_file": str, "reason": str, "detail": str, "raw_fields": str},
                          keep_default_na=False, na_filter=False, encoding="utf-8")
        rows = pd.concat([old, rows[REJECTED_COLUMNS]], ignore_index=True)
        path.unlink()
    rows = rows.sort_values("source_row", kind="mergesort")
    writer.write(rows)
    writer.close()
    return writer.rel_path


def write_rejected_rows(store: Store, folder: Path, dest: Path) -> int:
    """Concatenate every file's rejected rows into ``dest`` (sorted by file name, then line) without loading them.

    Returns the number of rows written.
    """
    order = sorted(range(len(store.files)), key=lambda i: (store.files[i].name, i))
    n = 0
    with open(dest, "w", encoding="utf-8", newline="") as out:
        out.write(",".join(REJECTED_COLUMNS) + "\n")
        for i in order:
            rec = store.files[i]
            if not rec.rejected_file:
                continue
            with open(folder / rec.rejected_file, encoding="utf-8", newline="") as fh:
                fh.readline()  # header
                shutil.copyfileobj(fh, out, 1 << 20)
            n += rec.rows_rejected
    return n
