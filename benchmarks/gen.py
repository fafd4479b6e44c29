"""Benchmark measurement CSVs: realistic rows over the sample district, deterministic by seed, cached on disk.

Every benchmark script takes its files from here, so the geopandas workflow, ``covgap run``,
the parse floor and the refresh all read the same bytes.

Rows are resampled from the sample district's own measurements (data/sample/measurements/
*.csv.gz: drive tests along its roads and lanes, phones logging at home), so the points follow
the roads and villages and the levels keep the sample's dead zones: each new row is a sample
row moved by a few metres (Gaussian, σ = 10 m, cut at 30 m) with its level changed by a few dB
(σ = 3 dB, kept inside its technology's range). Sample rows within 60 m of the district's edge
are not used as seeds, so every point lies in the study area. Columns, in this order::

    lat,lon,rsrp_dbm,technology,operator,timestamp
    15.097848,108.837962,-98,LTE,Viettel,2023-01-01 00:00:00+07:00

``timestamp`` is ISO 8601 with the +07:00 offset, one second apart from row to row
(``T0 + first_row + i``), so no two rows are duplicates by chance. Two kinds of bad row are
planted in a controlled number, so that the reader's counts can be checked:

- **exact duplicates** (``duplicate_share``, default 0.1 %): a copy of another good row of the
  same block; covgap must reject exactly these as ``duplicate_row``;
- **levels out of range** (``bad_level_share``, default 0.05 %): −160 dBm, rejected as
  ``dbm_out_of_range``.

Rows are written in blocks of one million with ``pyarrow.csv.write_csv`` (about 66 bytes and
1 µs a row: 2·10⁷ rows, 1.3 GB, in 20 s); block ``k`` depends only on ``(seed, first_row + k × block)``.

Files are cached in /tmp/covgap-bench (not in git) under a name made of rows, seed and
first row, with a ``.json`` beside each giving what was planted; a file is reused when that
record and its size match, so the 2·10⁷-row file is written once per machine::

    .venv/bin/python benchmarks/gen.py --rows 1000000 [--seed 1] [--first-row 0]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
CACHE_DIR = Path("/tmp/covgap-bench")

#: Bump when the rows a given (rows, seed, first_row) produces change: cached files are then rewritten.
GENERATOR_VERSION = 1
COLUMNS = ("lat", "lon", "rsrp_dbm", "technology", "operator", "timestamp")
UTC_OFFSET_S = 7 * 3600
T0_S = 1_672_506_000  # 2023-01-01T00:00:00+07:00: 10⁸ rows at one a second end in March 2026, before any run
BLOCK_ROWS = 1_000_000
JITTER_M = 10.0
JITTER_MAX_M = 30.0
EDGE_M = 60.0
LEVEL_SD_DB = 3.0
BAD_LEVEL_DBM = -160
M_PER_DEG_LAT = 111_320.0
#: Physical range of each technology's level, dBm, as covgap.measurements.SIGNAL_RANGE_DBM
#: (copied: the generator must not move when the reader is rewritten).
LEVEL_RANGE_DBM = {"LTE": (-140, -44), "NR": (-140, -44), "UMTS": (-120, -25), "GSM": (-115, -40)}


@dataclass(frozen=True)
class Planted:
    """What one generated file holds: its rows and how many of them covgap must reject, by reason."""

    rows: int
    seed: int
    first_row: int
    duplicate_row: int
    dbm_out_of_range: int
    version: int = GENERATOR_VERSION

    @property
    def rejected(self) -> int:
        return self.duplicate_row + self.dbm_out_of_range


@dataclass(frozen=True)
class SeedRows:
    """The sample rows new rows are drawn from (as arrays; technology and operator as codes)."""

    lat: np.ndarray
    lon: np.ndarray
    level: np.ndarray  # float dBm, NaN on 'no service' rows
    tech: np.ndarray  # index into technologies
    op: np.ndarray  # index into operators
    technologies: np.ndarray
    operators: np.ndarray


def load_seed_rows(sample: Path = SAMPLE) -> SeedRows:
    """The sample district's generic measurement rows that lie at least ``EDGE_M`` inside the district."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    files = sorted((sample / "measurements").glob("*.csv.gz"))
    if not files:
        raise FileNotFoundError(f"no *.csv.gz measurement file in {sample / 'measurements'}")
    rows = pd.concat([pd.read_csv(f, usecols=["lat", "lon", "rsrp_dbm", "technology", "operator"]) for f in files],
                     ignore_index=True)
    communes = gpd.read_file(sample / "communes_2025.geojson")
    utm = communes.estimate_utm_crs()
    inner = communes.to_crs(utm).union_all().buffer(-EDGE_M)
    x, y = gpd.GeoSeries(gpd.points_from_xy(rows["lon"], rows["lat"]), crs=4326).to_crs(utm).get_coordinates().to_numpy().T
    tech = rows["technology"].str.strip().str.upper().replace({"NO SERVICE": "no service"})
    keep = shapely.contains_xy(inner, x, y) & (tech.isin(list(LEVEL_RANGE_DBM)) | (tech == "no service")).to_numpy()
    rows, tech = rows[keep], tech[keep]
    tech_codes, technologies = pd.factorize(tech, sort=True)
    op_codes, operators = pd.factorize(rows["operator"], sort=True)
    return SeedRows(lat=rows["lat"].to_numpy(float), lon=rows["lon"].to_numpy(float),
                    level=rows["rsrp_dbm"].to_numpy(float), tech=tech_codes.astype(np.int8), op=op_codes.astype(np.int8),
                    technologies=np.asarray(technologies, dtype=object), operators=np.asarray(operators, dtype=object))


def _block(seeds: SeedRows, n: int, *, seed: int, first_row: int, duplicate_share: float,
           bad_level_share: float) -> tuple[dict[str, np.ndarray], int, int]:
    """One block of ``n`` rows starting at global row ``first_row``: columns, duplicates planted, bad levels planted."""
    rng = np.random.default_rng([seed, first_row])
    pick = rng.integers(0, len(seeds.lat), n)
    # Move each point by a Gaussian offset cut at JITTER_MAX_M (metres → degrees at the point's latitude).
    offset = np.clip(rng.normal(0.0, JITTER_M, (2, n)), -JITTER_MAX_M / np.sqrt(2), JITTER_MAX_M / np.sqrt(2))
    lat = seeds.lat[pick] + offset[0] / M_PER_DEG_LAT
    lon = seeds.lon[pick] + offset[1] / (M_PER_DEG_LAT * np.cos(np.radians(seeds.lat[pick])))
    tech = seeds.tech[pick]
    level = seeds.level[pick] + np.round(rng.normal(0.0, LEVEL_SD_DB, n))
    for code, name in enumerate(seeds.technologies):
        if name in LEVEL_RANGE_DBM:
            lo, hi = LEVEL_RANGE_DBM[name]
            sel = tech == code
            level[sel] = np.clip(level[sel], lo, hi)
    time_s = T0_S + first_row + np.arange(n, dtype=np.int64)
    cols = {"lat": np.round(lat, 6), "lon": np.round(lon, 6), "level": level, "tech": tech, "op": seeds.op[pick],
            "time_s": time_s}
    # Bad rows: positions drawn without replacement among rows with a level; duplicates copy another good row.
    n_dup, n_bad = int(round(n * duplicate_share)), int(round(n * bad_level_share))
    with_level = np.flatnonzero(np.isfinite(level))
    chosen = rng.choice(with_level, size=min(len(with_level), 2 * n_dup + n_bad), replace=False)
    dup_at, src, bad_at = chosen[:n_dup], chosen[n_dup:2 * n_dup], chosen[2 * n_dup:]
    for values in cols.values():
        values[dup_at] = values[src]
    level[bad_at] = BAD_LEVEL_DBM
    return cols, len(dup_at), len(bad_at)


def _local_times(time_s: np.ndarray):
    """``2023-01-01 00:00:00+07:00`` for each Unix second (formatting naive local times is 6× faster than tz-aware)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    local = pa.array(time_s + UTC_OFFSET_S).cast(pa.timestamp("s")).cast(pa.string())
    return pc.binary_join_element_wise(local, pa.scalar("+07:00"), "")


def write_measurements(path: Path, rows: int, *, seed: int = 1, first_row: int = 0, duplicate_share: float = 0.001,
                       bad_level_share: float = 0.0005, seeds: SeedRows | None = None) -> Planted:
    """Write ``rows`` generated rows to ``path`` (through a temporary file renamed at the end).

    Returns
    -------
    Planted
        The rows written and how many duplicates and out-of-range levels they hold.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    seeds = seeds or load_seed_rows()
    technologies = pa.array(list(seeds.technologies))
    operators = pa.array(list(seeds.operators))
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    n_dup = n_bad = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as fh:
        fh.write((",".join(COLUMNS) + "\n").encode())
        for start in range(0, rows, BLOCK_ROWS):
            n = min(BLOCK_ROWS, rows - start)
            cols, dups, bad = _block(seeds, n, seed=seed, first_row=first_row + start, duplicate_share=duplicate_share,
                                     bad_level_share=bad_level_share)
            n_dup, n_bad = n_dup + dups, n_bad + bad
            level = cols["level"]
            table = pa.table({
                "lat": cols["lat"], "lon": cols["lon"],
                "rsrp_dbm": pa.array(np.nan_to_num(level).astype(np.int16), mask=~np.isfinite(level)),
                "technology": technologies.take(cols["tech"]), "operator": operators.take(cols["op"]),
                "timestamp": _local_times(cols["time_s"]),
            })
            pacsv.write_csv(table, fh, options)
    os.replace(partial, path)
    return Planted(rows=rows, seed=seed, first_row=first_row, duplicate_row=n_dup, dbm_out_of_range=n_bad)


def cached_measurements(rows: int, *, seed: int = 1, first_row: int = 0, cache_dir: Path = CACHE_DIR,
                        seeds: SeedRows | None = None, verbose: bool = True) -> tuple[Path, Planted]:
    """The generated file of ``rows`` rows for this seed and first row, written only if not cached already."""
    path = cache_dir / f"measurements_{rows}_s{seed}_r{first_row}.csv"
    record = path.with_suffix(".json")
    if path.is_file() and record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        planted = Planted(**saved["planted"])
        if (planted.version == GENERATOR_VERSION and planted.rows == rows and saved["bytes"] == path.stat().st_size):
            return path, planted
    started = time.monotonic()
    planted = write_measurements(path, rows, seed=seed, first_row=first_row, seeds=seeds)
    record.write_text(json.dumps({"planted": asdict(planted), "bytes": path.stat().st_size}, indent=1), encoding="utf-8")
    if verbose:
        print(f"generated {path} ({rows:,} rows, {path.stat().st_size / 2**20:,.0f} MiB) "
              f"in {time.monotonic() - started:.0f} s", flush=True)
    return path, planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--first-row", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    args = parser.parse_args()
    path, planted = cached_measurements(args.rows, seed=args.seed, first_row=args.first_row, cache_dir=args.cache_dir)
    print(f"{path}: {planted}")


if __name__ == "__main__":
    main()
