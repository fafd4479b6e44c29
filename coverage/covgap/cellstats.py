"""Mergeable per-cell statistics and the cell classes derived from them.

Per grid cell, operator and technology we keep the sample count, a histogram of
integer dBm from −140 to −44 (97 bins) and the first and last sample time. Two
sets of statistics merge by adding counts and histograms and taking the min and
max of the times, so new measurement files update cells without re-reading the
old ones (DESIGN.md §3.2, §5). Percentiles come out of the histogram.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from covgap.grid import Grid, writable

DBM_MIN = -140
DBM_MAX = -44
NBINS = DBM_MAX - DBM_MIN + 1
HIST_COLUMNS = [f"h{d}" for d in range(DBM_MIN, DBM_MAX + 1)]
KEY_COLUMNS = ["cell", "operator", "technology"]
STAT_COLUMNS = [*KEY_COLUMNS, "n_samples", "t_first_s", "t_last_s", *HIST_COLUMNS]
#: Histogram counts are int32 (2^31 samples in one cell, operator and technology is out of
#: reach); it halves the memory of the statistics, which dominates large runs.
HIST_DTYPE = np.int32

#: Technologies that give 4G service or better (a 5G NR sample shows the target is met).
TARGET_TECHNOLOGIES = ("4G", "5G")
#: The technology of a row where the app logged "no service" (no network at all); it has no level.
NO_SERVICE_TECHNOLOGY = "none"


class CellClass(enum.IntEnum):
    """Class of a grid cell for the 4G target (DESIGN.md §3.3). The integer is the GeoTIFF value
    (0 = outside); the values of the first version are kept, the new class takes the next one.
    """

    COVERED = 1
    WEAK = 2
    NO_SERVICE = 3
    INSUFFICIENT = 4
    NO_4G = 5

    @property
    def label(self) -> str:
        """The machine name written to files (``covered``, ``weak_4g``, ``no_4g``, ``no_service``,
        ``insufficient_evidence``)."""
        return _CLASS_LABELS[self]

    @property
    def rank(self) -> int:
        """Order from best to worst service: covered 0 … no service 3; insufficient evidence last."""
        return _CLASS_RANK[self]


_CLASS_LABELS = {CellClass.COVERED: "covered", CellClass.WEAK: "weak_4g", CellClass.NO_4G: "no_4g",
                 CellClass.NO_SERVICE: "no_service", CellClass.INSUFFICIENT: "insufficient_evidence"}
_CLASS_RANK = {CellClass.COVERED: 0, CellClass.WEAK: 1, CellClass.NO_4G: 2, CellClass.NO_SERVICE: 3,
               CellClass.INSUFFICIENT: 4}
#: Classes that fail the 4G target although measured (the two kinds of 4G gap).
GAP_CLASSES = (CellClass.NO_4G, CellClass.NO_SERVICE)


def empty_stats() -> pd.DataFrame:
    """Statistics with no cell."""
    frame = pd.DataFrame({c: pd.Series(dtype=HIST_DTYPE if c in HIST_COLUMNS else np.int64) for c in STAT_COLUMNS})
    frame["operator"] = frame["operator"].astype(object)
    frame["technology"] = frame["technology"].astype(object)
    frame["t_first_s"] = frame["t_first_s"].astype(float)
    frame["t_last_s"] = frame["t_last_s"].astype(float)
    return frame


def aggregate_to_cells(rows: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """Per-cell statistics of normalised measurement rows with ``x``, ``y`` in the grid's CRS.

    Rows outside the grid are not counted (callers filter to the study area first).
    Levels are rounded to integer dBm and clipped to −140…−44 for the histogram
    (3G RSCP above −44 dBm counts in the top bin); rows without a level count in
    ``n_samples`` but not in the histogram. The same as one :class:`CellAccumulator`
    fed all rows at once.
    """
    acc = CellAccumulator(grid)
    acc.add(rows)
    return acc.to_stats()


@dataclass
class PartialStats:
    """The cell statistics of some rows in compact form: what a block sends to be merged.

    One entry per group (cell, operator, technology) with its count and first/last
    time, and the histogram as sparse triples (group, bin, count): a block touches a
    few bins of each group, so no dense 97-bin row is built per block.
    """

    cell: np.ndarray  # int64 per group
    operator: np.ndarray  # int64 per group: position in ``operators``
    technology: np.ndarray  # int64 per group: position in ``technologies``
    operators: list
    technologies: list
    n: np.ndarray
    tmin: np.ndarray
    tmax: np.ndarray
    hist_group: np.ndarray  # int64 per histogram entry: position of its group
    hist_bin: np.ndarray  # int64 per entry: dBm − DBM_MIN
    hist_count: np.ndarray  # int64 per entry

    @property
    def groups(self) -> int:
        return len(self.cell)


def partial_stats(rows: pd.DataFrame, grid: Grid, *, group_stats: Callable | None = None) -> PartialStats:
    """The compact statistics of normalised rows with working-CRS ``x``, ``y`` (or a ``cell`` column).

    Groups are found by hashing (pandas.factorize), not by sorting, and the histogram is
    counted per (group, bin) pair that occurs. ``group_stats``: the compiled equivalent of
    that hashing and counting (covgap.fastkernel.group_stats), the same result in one pass.
    """
    cell = rows["cell"].to_numpy(dtype=np.int64) if "cell" in rows else grid.cell_of(rows["x"].to_numpy(), rows["y"].to_numpy())
    if group_stats is None:  # the compiled counting leaves out the rows off the grid itself
        keep = cell >= 0
        if not keep.all():
            rows, cell = rows.loc[keep], cell[keep]
    return partial_stats_of(cell, pd.Categorical(rows["operator"]), pd.Categorical(rows["technology"]),
                            rows["time_s"].to_numpy(dtype=float), rows["signal_dbm"].to_numpy(dtype=float),
                            group_stats=group_stats)


def partial_stats_of(cell: np.ndarray, op: pd.Categorical, tech: pd.Categorical, t: np.ndarray, sig: np.ndarray, *,
                     group_stats: Callable | None = None) -> PartialStats:
    """:func:`partial_stats` of rows given as their columns: cells (−1: not counted; the pandas counting
    wants none), operators, technologies, times and levels."""
    n_ops, n_tech = max(len(op.categories), 1), max(len(tech.categories), 1)
    op_codes, tech_codes = np.asarray(op.codes, dtype=np.int64), np.asarray(tech.codes, dtype=np.int64)
    if group_stats is not None:
        w = writable  # the types the compiled function is cached for
        uniq, n, tmin, tmax, huniq, hcount = group_stats(w(cell, np.int64), w(op_codes, np.int64), w(tech_codes, np.int64),
                                                         n_ops, n_tech, w(t, np.float64), w(sig, np.float64), DBM_MIN, DBM_MAX)
    else:
        uniq, n, tmin, tmax, huniq, hcount = _group_counts((cell * n_ops + op_codes) * n_tech + tech_codes, t, sig)
    return PartialStats(cell=uniq // (n_ops * n_tech), operator=(uniq // n_tech) % n_ops, technology=uniq % n_tech,
                        operators=list(op.categories), technologies=list(tech.categories), n=n, tmin=tmin, tmax=tmax,
                        hist_group=huniq // NBINS, hist_bin=huniq % NBINS, hist_count=hcount)


def _group_counts(key: np.ndarray, t: np.ndarray, sig: np.ndarray) -> tuple[np.ndarray, ...]:
    """What :func:`partial_stats` counts per group key (by pandas' hashing): ``(group keys, counts, first and
    last times, (group, bin) pair keys, their counts)``, groups and pairs in the order they first appear."""
    codes, uniq = pd.factorize(key, sort=False)
    ng = len(uniq)
    n = np.bincount(codes, minlength=ng)
    tmin = np.full(ng, np.nan)
    tmax = np.full(ng, np.nan)
    if np.isfinite(t).any():
        np.fmin.at(tmin, codes, t)
        np.fmax.at(tmax, codes, t)
    has = np.isfinite(sig)
    bins = np.clip(np.rint(sig[has]), DBM_MIN, DBM_MAX).astype(np.int64) - DBM_MIN
    hcodes, huniq = pd.factorize(codes[has].astype(np.int64) * NBINS + bins, sort=False)
    hcount = np.bincount(hcodes, minlength=len(huniq))
    return (np.asarray(uniq, dtype=np.int64), n.astype(np.int64), tmin, tmax, np.asarray(huniq, dtype=np.int64),
            hcount.astype(np.int64))


#: Group keys are ``cell * LABELS + label`` (label: an (operator, technology) pair's number).
LABELS = 1 << 16


class CellAccumulator:
    """Cell statistics accumulated block by block in flat arrays (files streamed in blocks).

    Each group (cell, operator, technology) gets a row the first time a block brings it;
    counts add and times take min and max in place, and a block's sparse histogram
    entries (:class:`PartialStats`) add into those rows' bins, so no dense histogram is
    built per block and nothing seen so far is copied per block (the arrays double when
    full). Groups are found through a sorted index of their keys, merged with a block's
    new keys only. Memory: one int32 histogram row per group, as in the statistics
    :meth:`to_stats` returns. The result equals :func:`merge_stats` of each block's statistics.
    """

    def __init__(self, grid):
        self.grid = grid
        self.labels: dict[tuple[str, str], int] = {}  # (operator, technology) → label
        self._sorted_keys: np.ndarray | None = np.empty(0, dtype=np.int64)  # None: to be made from the keys
        self._sorted_pos = np.empty(0, dtype=np.int64)
        self._slots: np.ndarray | None = None  # the hash table of covgap.fastkernel.accumulate, when it is used
        self._keys = np.empty(0, dtype=np.int64)
        self._n = np.empty(0, dtype=np.int64)
        self._hist = np.empty((0, NBINS), dtype=HIST_DTYPE)
        self._tmin = np.empty(0)
        self._tmax = np.empty(0)
        self.size = 0

    def add(self, rows: pd.DataFrame) -> None:
        """Add normalised rows with working-CRS ``x``, ``y`` (rows outside the grid are not counted)."""
        if len(rows):
            self.add_partial(partial_stats(rows, self.grid))

    def add_partial(self, part: PartialStats) -> None:
        """Add the compact statistics of a block (:func:`partial_stats`)."""
        if not part.groups:
            return
        n_tech = max(len(part.technologies), 1)
        table = np.array([self.labels.setdefault((o, t), len(self.labels)) for o in part.operators for t in part.technologies],
                         dtype=np.int64)
        if len(self.labels) >= LABELS:
            raise ValueError(f"more than {LABELS} operator and technology pairs")
        key = part.cell * LABELS + table[part.operator * n_tech + part.technology]
        from covgap import fastparse

        module = fastparse.loaded()
        if module is not None:  # where the compiled functions are loaded (a reading process of a large file)
            self._add_compiled(module, key, part)
            return
        pos = self._lookup(key)
        self._n[pos] += part.n
        self._tmin[pos] = np.fmin(self._tmin[pos], part.tmin)
        self._tmax[pos] = np.fmax(self._tmax[pos], part.tmax)
        if len(part.hist_count):  # (group, bin) pairs are distinct within a block: a plain fancy-index add
            self._hist[pos[part.hist_group], part.hist_bin] += part.hist_count.astype(HIST_DTYPE)

    def _add_compiled(self, module, key: np.ndarray, part: PartialStats) -> None:
        """:meth:`add_partial` by covgap.fastkernel.accumulate, its groups found through a hash table of
        their keys (:attr:`_slots`, never more than half full) instead of the sorted index."""
        self._grow(self.size + len(key))
        need = 2 * (self.size + len(key))
        if self._slots is None or len(self._slots) < need:
            n_slots = 1 << max(need - 1, 1 << 12).bit_length()
            self._slots = module.rehash(self._keys, self.size, n_slots)
        w = writable
        self.size = module.accumulate(self._slots, self._keys, self.size, self._n, self._tmin, self._tmax, self._hist,
                                      w(key, np.int64), w(part.n, np.int64), w(part.tmin, np.float64),
                                      w(part.tmax, np.float64), w(part.hist_group, np.int64), w(part.hist_bin, np.int64),
                                      w(part.hist_count, np.int64))
        self._sorted_keys = None  # stale: made again from the keys if the sorted index is needed

    def _lookup(self, key: np.ndarray) -> np.ndarray:
        """Row positions of group keys (distinct within the call), adding rows for new ones."""
        if self._sorted_keys is None:  # groups were added through the hash table
            self._sorted_pos = np.argsort(self._keys[:self.size], kind="stable")
            self._sorted_keys = self._keys[:self.size][self._sorted_pos]
        self._slots = None  # stale: made again from the keys if the hash table is needed
        pos = np.full(len(key), -1, dtype=np.int64)
        if len(self._sorted_keys):
            at = np.minimum(np.searchsorted(self._sorted_keys, key), len(self._sorted_keys) - 1)
            found = self._sorted_keys[at] == key
            pos[found] = self._sorted_pos[at[found]]
        new = np.flatnonzero(pos < 0)
        if len(new):
            k = len(new)
            self._grow(self.size + k)
            new_pos = np.arange(self.size, self.size + k)
            pos[new] = new_pos
            self._keys[new_pos] = key[new]
            self.size += k
            order = np.argsort(key[new])
            nk, npos = key[new][order], new_pos[order]
            at = np.searchsorted(self._sorted_keys, nk)
            self._sorted_keys = np.insert(self._sorted_keys, at, nk)
            self._sorted_pos = np.insert(self._sorted_pos, at, npos)
        return pos

    def _grow(self, need: int) -> None:
        cap = len(self._keys)
        if need <= cap:
            return
        cap = max(need, cap + cap // 4, 4096)  # geometric (amortised O(1) per group), without doubling a large array

        def grown(a: np.ndarray, fill) -> np.ndarray:
            out = np.empty((cap, *a.shape[1:]), dtype=a.dtype)
            out[:self.size] = a[:self.size]
            out[self.size:] = fill
            return out

        self._keys = grown(self._keys, 0)
        self._n = grown(self._n, 0)
        self._hist = grown(self._hist, 0)
        self._tmin = grown(self._tmin, np.nan)
        self._tmax = grown(self._tmax, np.nan)

    def to_partial(self) -> PartialStats:
        """The statistics so far in compact form (to merge into another accumulator: a worker's share)."""
        by_id = sorted(self.labels, key=self.labels.__getitem__)
        operators = list(dict.fromkeys(o for o, _ in by_id))
        technologies = list(dict.fromkeys(t for _, t in by_id))
        op_of = np.array([operators.index(o) for o, _ in by_id] or [0], dtype=np.int64)
        tech_of = np.array([technologies.index(t) for _, t in by_id] or [0], dtype=np.int64)
        key = self._keys[:self.size]
        label = key % LABELS
        rows, bins = np.nonzero(self._hist[:self.size])
        return PartialStats(cell=key // LABELS, operator=op_of[label], technology=tech_of[label], operators=operators,
                            technologies=technologies, n=self._n[:self.size].copy(), tmin=self._tmin[:self.size].copy(),
                            tmax=self._tmax[:self.size].copy(), hist_group=rows.astype(np.int64), hist_bin=bins.astype(np.int64),
                            hist_count=self._hist[rows, bins].astype(np.int64))

    def to_stats(self) -> pd.DataFrame:
        """The statistics as cellstats builds them (STAT_COLUMNS, canonical order)."""
        if not self.size:
            return empty_stats()
        key = self._keys[:self.size]
        # Canonical order (cell, operator, technology): rank the labels by their names, sort by (cell, rank).
        by_id = sorted(self.labels, key=self.labels.__getitem__)
        rank = np.empty(len(by_id), dtype=np.int64)
        for r, ot in enumerate(sorted(by_id, key=lambda ot: (str(ot[0]), str(ot[1])))):
            rank[self.labels[ot]] = r
        cell, label = key // LABELS, key % LABELS
        order = np.argsort(cell * len(rank) + rank[label], kind="stable")
        ops = np.array([ot[0] for ot in by_id], dtype=object)
        techs = np.array([ot[1] for ot in by_id], dtype=object)
        lab = label[order]
        # One int32 block for the histogram (no second copy), the key columns inserted in front of it.
        frame = pd.DataFrame(self._hist[order], columns=HIST_COLUMNS, copy=False)
        for i, (name, values) in enumerate((("cell", cell[order]), ("operator", ops[lab]), ("technology", techs[lab]),
                                            ("n_samples", self._n[order]), ("t_first_s", self._tmin[order]),
                                            ("t_last_s", self._tmax[order]))):
            frame.insert(i, name, values)
        return frame


def subtract_stats(stats: pd.DataFrame, minus: pd.DataFrame) -> pd.DataFrame:
    """``stats`` without the rows counted in ``minus`` (rows found later to be duplicates).

    Counts and histograms subtract; a group left with no sample goes. First and last
    times stay: a duplicate has the time of the row it repeats, which is counted in the
    same group (of this file or of the one it repeats), so merged statistics stay exact.
    Both are in the canonical order (:func:`sort_stats`).
    """
    if minus.empty:
        return stats
    keys = pd.MultiIndex.from_frame(stats[KEY_COLUMNS])
    at = keys.get_indexer(pd.MultiIndex.from_frame(minus[KEY_COLUMNS]))
    if (at < 0).any():
        raise ValueError("subtracting statistics of groups that were never counted")
    n = stats["n_samples"].to_numpy(dtype=np.int64).copy()
    hist = stats[HIST_COLUMNS].to_numpy(dtype=HIST_DTYPE, copy=True)
    np.subtract.at(n, at, minus["n_samples"].to_numpy(dtype=np.int64))
    np.subtract.at(hist, at, minus[HIST_COLUMNS].to_numpy(dtype=HIST_DTYPE))
    if (n < 0).any() or (hist[at] < 0).any():
        raise ValueError("subtracting more samples than were counted")
    out = stats[KEY_COLUMNS + ["n_samples", "t_first_s", "t_last_s"]].copy()
    out["n_samples"] = n
    out = pd.concat([out, pd.DataFrame(hist, columns=HIST_COLUMNS, index=out.index)], axis=1)
    return out[n > 0].reset_index(drop=True)


def merge_stats(*parts: pd.DataFrame | None) -> pd.DataFrame:
    """Merge statistics exactly: counts and histograms add, times take min and max.

    Each part is added into the result in place, part after part (its groups are distinct:
    statistics hold one row per group), so memory holds the result and the parts given, not
    a concatenation of every histogram and a sorted copy of it (which, for ten 10⁷-row
    files, was most of a run's peak).
    """
    given = [p for p in parts if p is not None and not p.empty]
    if not given:
        return empty_stats()
    if len(given) == 1 and not given[0].duplicated(KEY_COLUMNS).any():
        return sort_stats(given[0].copy())
    keys = pd.concat([p[KEY_COLUMNS] for p in given], ignore_index=True)
    codes, first = _factorize_keys(keys)
    groups = len(first)
    n = np.zeros(groups, dtype=np.int64)
    hist = np.zeros((groups, NBINS), dtype=HIST_DTYPE)
    t_first = np.full(groups, np.nan)
    t_last = np.full(groups, np.nan)
    start = 0
    for part in given:
        at = codes[start:start + len(part)]
        start += len(part)
        part_hist = part[HIST_COLUMNS].to_numpy(dtype=HIST_DTYPE)
        if np.bincount(at, minlength=groups).max() > 1:  # a group twice in one part: added one by one
            np.add.at(n, at, part["n_samples"].to_numpy(dtype=np.int64))
            np.add.at(hist, at, part_hist)
            np.fmin.at(t_first, at, part["t_first_s"].to_numpy(dtype=float))
            np.fmax.at(t_last, at, part["t_last_s"].to_numpy(dtype=float))
            continue
        n[at] += part["n_samples"].to_numpy(dtype=np.int64)
        hist[at] += part_hist
        t_first[at] = np.fmin(t_first[at], part["t_first_s"].to_numpy(dtype=float))
        t_last[at] = np.fmax(t_last[at], part["t_last_s"].to_numpy(dtype=float))
    # Each key column as an index of its values infers its dtype (strings: pandas' string dtype), as the
    # levels of pd.MultiIndex.factorize did: the merged statistics are the same frame as before.
    keys = pd.DataFrame({c: pd.Index(keys[c].to_numpy()[first].tolist()) for c in KEY_COLUMNS})
    merged = pd.concat(
        [keys, pd.DataFrame({"n_samples": n, "t_first_s": t_first, "t_last_s": t_last}),
         pd.DataFrame(hist, columns=HIST_COLUMNS)],
        axis=1,
    )
    merged["cell"] = merged["cell"].astype(np.int64)
    return sort_stats(merged)


def _factorize_keys(keys: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(group of each row, the row where each group first appears)`` for rows keyed by :data:`KEY_COLUMNS`,
    groups numbered in the order they first appear (as ``pd.MultiIndex.factorize`` numbers them, which builds a
    tuple a row: half of a refresh's merge). Each column is factorized, and the codes combined into one integer."""
    columns = [pd.factorize(keys[col]) for col in KEY_COLUMNS]
    if any((codes < 0).any() for codes, _ in columns) or \
            math.prod(max(len(uniques), 1) for _, uniques in columns) > np.iinfo(np.int64).max:
        found, uniq = pd.MultiIndex.from_frame(keys).factorize()  # a missing key, or too many: the general way
        return found, _first_rows(found, len(uniq))
    combined = np.zeros(len(keys), dtype=np.int64)
    for codes, uniques in columns:
        combined = combined * len(uniques) + codes
    group, uniq = pd.factorize(combined)
    return group, _first_rows(group, len(uniq))


def _first_rows(group: np.ndarray, groups: int) -> np.ndarray:
    """Where each of ``groups`` groups (numbered in the order they first appear in ``group``) first appears."""
    first = np.empty(groups, dtype=np.int64)
    first[group[::-1]] = np.arange(len(group) - 1, -1, -1)
    return first


def sort_stats(stats: pd.DataFrame) -> pd.DataFrame:
    """A canonical row order, so equal statistics give byte-identical files."""
    return stats.sort_values(KEY_COLUMNS, kind="mergesort").reset_index(drop=True)[STAT_COLUMNS]


def hist_percentile(hist: np.ndarray, q: float) -> np.ndarray:
    """The q-th percentile (0–1) of each histogram row, in integer dBm; NaN for empty rows.

    Notes
    -----
    The percentile is the smallest level ``d`` such that at least ``q·n`` samples
    are at or below ``d``. For the median of an even count this is the lower of
    the two middle values (−110 for samples −100 and −110).
    """
    hist = np.atleast_2d(hist)
    n = hist.sum(axis=1)
    cum = np.cumsum(hist, axis=1)
    target = np.maximum(q * n, 1e-9)
    idx = np.argmax(cum >= target[:, None] - 1e-9, axis=1)
    out = (idx + DBM_MIN).astype(float)
    out[n == 0] = np.nan
    return out


VIEW_COLUMNS = ["cell", "operator", "n_samples", "n_4g", "n_3g", "n_2g", "n_no_service", "share_4g",
                "rsrp_dbm_p10", "rsrp_dbm_p50", "rscp_dbm_p50", "rxlev_dbm_p50", "share_ge_covered",
                "t_first_s", "t_last_s", "cell_class"]


def operator_view(stats: pd.DataFrame, *, covered_dbm: float, dead_dbm: float, min_samples: int,
                  usable_3g_dbm: float = -100.0, usable_2g_dbm: float = -100.0,
                  min_time_spread_hours: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Per cell and operator: the cell class and its figures, and the pooled 4G histograms.

    Returns one row per (cell, operator) with the columns of :data:`VIEW_COLUMNS`:
    ``n_samples`` (every sample, any technology or none), ``n_4g`` (4G/5G samples),
    ``n_3g``, ``n_2g``, ``n_no_service`` (the app logged no network), ``share_4g``
    (``n_4g / n_samples``), ``rsrp_dbm_p10`` and ``rsrp_dbm_p50`` (4G/5G RSRP),
    ``rscp_dbm_p50`` (3G RSCP median), ``rxlev_dbm_p50`` (2G RxLev/RSSI median),
    ``share_ge_covered``, ``t_first_s``, ``t_last_s`` and ``cell_class``
    (:class:`CellClass` value); and an (n_rows, 97) array with each row's 4G/5G
    histogram (for percentiles over zones).

    Notes
    -----
    See :func:`classify` for the rule. A (cell, operator) has at most one stats row per
    technology, so the 3G and 2G medians are those rows' own medians; 4G pools 4G and 5G.
    """
    if stats.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "operator" else float) for c in VIEW_COLUMNS}), \
            np.zeros((0, NBINS), dtype=HIST_DTYPE)
    tech = stats["technology"].to_numpy(dtype=object)
    is4 = np.isin(tech, TARGET_TECHNOLOGIES)
    n_rows = stats["n_samples"].to_numpy(dtype=np.int64)
    hist = stats[HIST_COLUMNS].to_numpy(dtype=HIST_DTYPE, copy=True)
    is23 = np.isin(tech, ("2G", "3G"))
    p50_row = np.full(len(tech), np.nan)
    if is23.any():
        p50_row[is23] = hist_percentile(hist[is23], 0.50)
    frame = pd.DataFrame(
        {
            "cell": stats["cell"].to_numpy(),
            "operator": stats["operator"].to_numpy(),
            "n_samples": n_rows,
            "n_4g": np.where(is4, n_rows, 0),
            "n_3g": np.where(tech == "3G", n_rows, 0),
            "n_2g": np.where(tech == "2G", n_rows, 0),
            "n_no_service": np.where(tech == NO_SERVICE_TECHNOLOGY, n_rows, 0),
            "rscp_dbm_p50": np.where(tech == "3G", p50_row, np.nan),
            "rxlev_dbm_p50": np.where(tech == "2G", p50_row, np.nan),
            "t_first_s": stats["t_first_s"].to_numpy(),
            "t_last_s": stats["t_last_s"].to_numpy(),
        }
    )
    hist[~is4] = 0  # only 4G/5G levels enter the RSRP histogram
    grouped = frame.groupby(["cell", "operator"], sort=True)
    view = grouped.agg(n_samples=("n_samples", "sum"), n_4g=("n_4g", "sum"), n_3g=("n_3g", "sum"),
                       n_2g=("n_2g", "sum"), n_no_service=("n_no_service", "sum"),
                       rscp_dbm_p50=("rscp_dbm_p50", "max"), rxlev_dbm_p50=("rxlev_dbm_p50", "max"),
                       t_first_s=("t_first_s", "min"), t_last_s=("t_last_s", "max")).reset_index()
    codes = grouped.ngroup().to_numpy()
    if len(codes) > 1 and (np.diff(codes) < 0).any():  # merged statistics are sorted already
        order = np.argsort(codes, kind="stable")
        codes, hist = codes[order], hist[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    h = np.add.reduceat(hist, starts, axis=0, dtype=HIST_DTYPE)
    del hist
    n_4g_level = h.sum(axis=1)
    view["share_4g"] = view["n_4g"] / np.maximum(view["n_samples"], 1)
    view["rsrp_dbm_p10"] = hist_percentile(h, 0.10)
    view["rsrp_dbm_p50"] = hist_percentile(h, 0.50)
    ge = h[:, int(np.ceil(covered_dbm)) - DBM_MIN:].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        view["share_ge_covered"] = np.where(n_4g_level > 0, ge / np.maximum(n_4g_level, 1), np.nan)
    view["cell_class"] = classify(
        view["n_samples"].to_numpy(), view["n_4g"].to_numpy(), view["n_no_service"].to_numpy(),
        view["rsrp_dbm_p50"].to_numpy(),
        view["rscp_dbm_p50"].to_numpy(), view["rxlev_dbm_p50"].to_numpy(),
        view["t_last_s"].to_numpy() - view["t_first_s"].to_numpy(),
        covered_dbm=covered_dbm, dead_dbm=dead_dbm, usable_3g_dbm=usable_3g_dbm, usable_2g_dbm=usable_2g_dbm,
        min_samples=min_samples, min_time_spread_s=min_time_spread_hours * 3600.0,
    )
    return view[VIEW_COLUMNS], h


def classify(n_samples: np.ndarray, n_4g: np.ndarray, n_no_service: np.ndarray, rsrp_p50: np.ndarray, rscp_p50: np.ndarray,
             rxlev_p50: np.ndarray, spread_s: np.ndarray, *, covered_dbm: float, dead_dbm: float,
             usable_3g_dbm: float, usable_2g_dbm: float, min_samples: int,
             min_time_spread_s: float = 0.0) -> np.ndarray:
    """Cell classes (:class:`CellClass` integers) from the counts and the medians of each technology.

    Notes
    -----
    With ``n`` samples of which ``n_4g`` on 4G/5G (DESIGN.md §3.3):

    * *insufficient evidence*: ``n < min_samples`` (or, when ``min_time_spread_s > 0``,
      first and last sample closer in time than that);
    * 4G decides when at least half the samples are on 4G/5G (``2·n_4g ≥ n``) and its
      median RSRP reaches ``dead_dbm``: *covered* at ``covered_dbm`` or above, else *weak 4G*;
    * *no service* when the app logged "no service" in more than half the samples;
    * otherwise (the phone was mostly on 2G/3G or had no network, or 4G is below
      ``dead_dbm``): *no 4G* when 2G or 3G is usable (median RSCP ≥ ``usable_3g_dbm`` or
      median RxLev ≥ ``usable_2g_dbm``); else *weak 4G* when the minority 4G samples
      reach ``dead_dbm`` (4G there, but only part of the time, never called "no service");
      else *no service*: no technology reaches its usable level.

    So a cell labelled no service has no median at or above its usable level (unless the app
    itself logged "no service" in most samples), and a cell labelled no 4G always has a usable
    2G/3G median.
    """
    n = np.asarray(n_samples, dtype=float)
    n4 = np.asarray(n_4g, dtype=float)
    p4 = np.nan_to_num(np.asarray(rsrp_p50, dtype=float), nan=-999.0)
    p3 = np.nan_to_num(np.asarray(rscp_p50, dtype=float), nan=-999.0)
    p2 = np.nan_to_num(np.asarray(rxlev_p50, dtype=float), nan=-999.0)
    enough = n >= min_samples
    if min_time_spread_s > 0:
        enough &= np.nan_to_num(np.asarray(spread_s, dtype=float), nan=0.0) >= min_time_spread_s
    usable_4g = p4 >= dead_dbm
    on_4g = (2 * n4 >= n) & (n4 > 0) & usable_4g
    usable_23 = (p3 >= usable_3g_dbm) | (p2 >= usable_2g_dbm)
    logged_none = 2 * np.asarray(n_no_service, dtype=float) > n
    out = np.select(
        [~enough, on_4g & (p4 >= covered_dbm), on_4g, logged_none, usable_23, usable_4g],
        [int(CellClass.INSUFFICIENT), int(CellClass.COVERED), int(CellClass.WEAK), int(CellClass.NO_SERVICE),
         int(CellClass.NO_4G), int(CellClass.WEAK)],
        default=int(CellClass.NO_SERVICE),
    )
    return out.astype(np.int64)


def best_operator_view(op_view: pd.DataFrame) -> pd.DataFrame:
    """Per cell, the 'any operator' view: the best class among operators with enough evidence.

    Returns one row per measured cell with ``n_samples`` (all operators),
    ``n_operators``, ``best_operator``, the best operator's ``share_4g``,
    ``rsrp_dbm_p50``, ``rscp_dbm_p50`` and ``rxlev_dbm_p50``, ``t_first_s``,
    ``t_last_s`` and ``cell_class``. Covered beats weak 4G beats no 4G beats no
    service; a cell where no operator has enough evidence is insufficient evidence,
    even if its pooled samples are many. Among operators of the same class the one
    with the higher 4G median (then 3G median) is shown.
    """
    cols = ["cell", "n_samples", "n_operators", "best_operator", "share_4g", "rsrp_dbm_p50", "rscp_dbm_p50",
            "rxlev_dbm_p50", "t_first_s", "t_last_s", "cell_class"]
    if op_view.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "best_operator" else float) for c in cols})
    rank = op_view["cell_class"].map({int(c): c.rank for c in CellClass}).to_numpy()
    ordered = op_view.assign(_rank=rank, _neg_p50=-op_view["rsrp_dbm_p50"].fillna(-999),
                             _neg_p3=-op_view["rscp_dbm_p50"].fillna(-999))
    ordered = ordered.sort_values(["cell", "_rank", "_neg_p50", "_neg_p3", "operator"], kind="mergesort")
    best = ordered.groupby("cell", sort=True).first().reset_index()
    totals = op_view.groupby("cell", sort=True).agg(
        n_samples=("n_samples", "sum"), n_operators=("operator", "nunique"),
        t_first_s=("t_first_s", "min"), t_last_s=("t_last_s", "max")).reset_index()
    shown = ["share_4g", "rsrp_dbm_p50", "rscp_dbm_p50", "rxlev_dbm_p50"]
    out = totals.merge(best[["cell", "operator", "cell_class", *shown]], on="cell").rename(
        columns={"operator": "best_operator"})
    insufficient = out["cell_class"] == int(CellClass.INSUFFICIENT)
    out.loc[insufficient, "best_operator"] = ""
    out.loc[insufficient, shown] = np.nan
    return out[cols]


def class_raster(view: pd.DataFrame, grid: Grid, inside: np.ndarray) -> np.ndarray:
    """A (nrows, ncols) uint8 array of cell classes; 0 outside the study area.

    ``inside`` is a boolean (nrows, ncols) mask of the cells in the study area;
    unmeasured cells inside it are insufficient evidence.
    """
    arr = np.where(inside, int(CellClass.INSUFFICIENT), 0).astype(np.uint8).ravel()
    if not view.empty:
        cells = view["cell"].to_numpy(dtype=np.int64)
        arr[cells] = np.where(inside.ravel()[cells], view["cell_class"].to_numpy(dtype=np.uint8), 0)
    return arr.reshape(grid.nrows, grid.ncols)
