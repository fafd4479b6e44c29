"""The compiled kernel of :mod:`covgap.fastparse` (numba): import it through :func:`covgap.fastparse.kernel`.

Each function is compiled on first use and cached on disk by numba (``cache=True``).
"""

import numba
import numpy as np

njit = numba.njit(cache=True, nogil=True, boundscheck=False)
_POW10 = np.array([10.0 ** k for k in range(16)])


@njit
def two(data, j):
    a = data[j] - 48
    b = data[j + 1] - 48
    if a > 9 or b > 9:  # uint8 arithmetic: a byte below '0' wraps above 9
        return -1
    return a * 10 + b

@njit
def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468

@njit
def timestamp(data, f0, f1):
    """``YYYY-MM-DD[T ]HH:MM:SS`` and ``Z`` or ``±HH:MM`` → (Unix seconds, True); else (nan, False)."""
    n = f1 - f0
    if n != 20 and n != 25:
        return np.nan, False
    if data[f0 + 4] != 45 or data[f0 + 7] != 45 or data[f0 + 13] != 58 or data[f0 + 16] != 58:
        return np.nan, False
    t = data[f0 + 10]
    if t != 84 and t != 32:
        return np.nan, False
    hi, lo = two(data, f0), two(data, f0 + 2)
    mo, d = two(data, f0 + 5), two(data, f0 + 8)
    hh, mi, ss = two(data, f0 + 11), two(data, f0 + 14), two(data, f0 + 17)
    if hi < 19 or hi > 21 or lo < 0 or mo < 1 or mo > 12 or d < 1 or hh < 0 or hh > 23 or mi < 0 or mi > 59 \
            or ss < 0 or ss > 59:
        return np.nan, False
    y = hi * 100 + lo
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    dim = 31
    if mo == 2:
        dim = 29 if leap else 28
    elif mo == 4 or mo == 6 or mo == 9 or mo == 11:
        dim = 30
    if d > dim:
        return np.nan, False
    off = 0
    if n == 20:
        if data[f0 + 19] != 90:  # Z
            return np.nan, False
    else:
        s = data[f0 + 19]
        if (s != 43 and s != 45) or data[f0 + 22] != 58:
            return np.nan, False
        oh, om = two(data, f0 + 20), two(data, f0 + 23)
        if oh < 0 or oh > 14 or om < 0 or om > 59:
            return np.nan, False
        off = oh * 3600 + om * 60
        if s == 45:
            off = -off
    return float(days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - off), True

@njit
def timestamp_after(data, f0, f1, memo):
    """:func:`timestamp`, sooner for a time whose date and offset are the bytes of the last one read (a log's
    rows come in time order): then only its ``[T ]HH:MM:SS`` is read and checked. ``memo``: where that last
    valid time starts in ``data`` (−1: none yet), its length, and its Unix seconds less its hours,
    minutes and seconds."""
    n = f1 - f0
    p = memo[0]
    if p >= 0 and memo[1] == n:
        same = True
        for k in range(10):
            if data[p + k] != data[f0 + k]:
                same = False
                break
        if same:
            for k in range(19, n):
                if data[p + k] != data[f0 + k]:
                    same = False
                    break
        if same:  # the date and the offset checked already: the rest as timestamp() checks it
            t = data[f0 + 10]
            if (t == 84 or t == 32) and data[f0 + 13] == 58 and data[f0 + 16] == 58:
                hh, mi, ss = two(data, f0 + 11), two(data, f0 + 14), two(data, f0 + 17)
                if 0 <= hh <= 23 and 0 <= mi <= 59 and 0 <= ss <= 59:
                    return float(memo[2] + hh * 3600 + mi * 60 + ss), True
            return np.nan, False
    v, ok = timestamp(data, f0, f1)
    if ok:
        memo[0] = f0
        memo[1] = n
        memo[2] = np.int64(v) - (two(data, f0 + 11) * 3600 + two(data, f0 + 14) * 60 + two(data, f0 + 17))
    return v, ok


@njit
def spelling(w0, w1, n, f0, k, words, first, count):
    """The position of a technology's or operator's spelling (its bytes packed in ``w0``, ``w1``, its
    length ``n``, where it starts ``f0``) among the block's, added if new; −1 when there are too many."""
    for p in range(count[k]):
        if words[k, p, 0] == w0 and words[k, p, 1] == w1 and words[k, p, 2] == np.uint64(n):
            return p
    p = count[k]
    if p >= words.shape[1]:
        return -1
    words[k, p, 0] = w0
    words[k, p, 1] = w1
    words[k, p, 2] = np.uint64(n)
    first[k, p] = f0
    count[k] = p + 1
    return p


#: A byte's class for the scan (:func:`parse`): ordinary, the end of a field (``\n``; the separator is
#: added per call), or one the parser leaves to pyarrow's reader (a quote, ``\r``, outside ASCII).
ORDINARY, FIELD_END, NOT_PLAIN = 0, 1, 2


def byte_classes(sep: int) -> np.ndarray:
    """The class of each byte value for a file whose separator is ``sep``."""
    cls = np.zeros(256, np.uint8)
    cls[128:] = NOT_PLAIN
    cls[34] = cls[13] = NOT_PLAIN
    cls[10] = cls[sep] = FIELD_END
    return cls


@njit
def _digits(data, i, size, m):
    """Digits from ``i`` on: ``(position after them, the number with them appended to m, how many)``."""
    k = 0
    while i < size:
        d = np.int64(data[i]) - 48
        if d < 0 or d > 9:
            break
        m = m * 10 + d
        i += 1
        k += 1
    return i, m, k


@njit
def parse(data, n_lines, cls, roles, lat, lon, sig, tsec, codes, starts, words, first, count):
    """Read ``n_lines`` lines of ``data``; the number of lines read, or the first that is not plain.

    One pass: a number's digits add up while its field is scanned, a time is checked at its
    fixed places (every one of its bytes is looked at, so no separator hides in it), and a
    technology or operator is packed into two words while scanned. ``cls``: :func:`byte_classes`.
    """
    ncols = len(roles)
    size = len(data)
    memo = np.full(3, -1, np.int64)  # the last valid time (timestamp_after)
    i = 0
    for line in range(n_lines):
        starts[line] = i
        col = 0
        while True:
            if col >= ncols:
                return line
            role = roles[col]
            if role == 1 or role == 2 or role == 3:
                f0 = i
                neg = False
                if i < size and data[i] == 45:
                    neg = True
                    i += 1
                i, m, whole = _digits(data, i, size, 0)
                frac = 0
                if i < size and data[i] == 46:
                    i, m, frac = _digits(data, i + 1, size, m)
                    if frac == 0:  # "5.": another shape
                        return line
                if i < size and cls[data[i]] != FIELD_END:
                    return line
                if i == f0:
                    v = np.nan  # empty: missing, as pyarrow's reader makes it
                elif whole == 0 or whole + frac > 15:
                    return line
                else:
                    v = float(m)
                    if frac > 0:
                        v = v / _POW10[frac]
                    if neg:
                        v = -v
                if role == 1:
                    lat[line] = v
                elif role == 2:
                    lon[line] = v
                else:
                    sig[line] = v
            elif role == 6:
                w = 20 if i + 19 < size and data[i + 19] == 90 else 25  # ...Z, or an offset
                if i + w > size or (i + w < size and cls[data[i + w]] != FIELD_END):
                    return line
                v, ok = timestamp_after(data, i, i + w, memo)
                if not ok:
                    return line
                tsec[line] = v
                i += w
            elif role == 4 or role == 5:
                f0 = i
                w0 = np.uint64(0)
                w1 = np.uint64(0)
                while i < size:
                    c = data[i]
                    k = cls[c]
                    if k == FIELD_END:
                        break
                    if k == NOT_PLAIN:
                        return line
                    j = i - f0
                    if j < 8:
                        w0 |= np.uint64(c) << np.uint64(8 * j)
                    elif j < 16:
                        w1 |= np.uint64(c) << np.uint64(8 * (j - 8))
                    else:
                        return line
                    i += 1
                p = spelling(w0, w1, i - f0, f0, role - 4, words, first, count)
                if p < 0:
                    return line
                codes[role - 4, line] = p
            else:
                while i < size:
                    k = cls[data[i]]
                    if k == FIELD_END:
                        break
                    if k == NOT_PLAIN:
                        return line
                    i += 1
            col += 1
            if i >= size or data[i] == 10:
                break
            i += 1  # the separator (the only other end of a field)
        if col != ncols:
            return line
        if i >= size:  # the last line, without its end
            if line != n_lines - 1:
                return line + 1
        else:
            i += 1
    starts[n_lines] = i
    if i != size:
        return n_lines - 1 if n_lines else 0
    return n_lines


@njit
def _slot(key, mask):
    """A key's first place in an open-addressing table of ``mask + 1`` places (SplitMix64's finaliser)."""
    h = np.uint64(key)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return np.int64(h & np.uint64(mask))


@njit
def _find(slots, keys, key, count):
    """``key``'s number in an open-addressing table (:func:`_table`: ``slots`` hold numbers into ``keys``),
    added as number ``count`` if new: ``(its number, the count of keys after)``."""
    mask = len(slots) - 1
    h = _slot(key, mask)
    while True:
        g = slots[h]
        if g < 0:
            slots[h] = count
            keys[count] = key
            return count, count + 1
        if keys[g] == key:
            return g, count
        h = (h + 1) & mask


@njit
def _table(n):
    """An empty table for up to ``n`` keys: ``(slots, keys)``, at least twice as many slots (a power of
    two), so it is never more than half full."""
    size = 16
    while size < 2 * n:
        size *= 2
    return np.full(size, -1, np.int64), np.empty(n, np.int64)


@njit
def group_stats(cell, op, tech, n_ops, n_tech, t, sig, dbm_min, dbm_max):
    """The statistics of rows by group (cell, operator, technology), groups and (group, bin) pairs in the
    order they first appear, as ``pandas.factorize`` numbers them (see covgap.cellstats.partial_stats).
    Rows of cell −1 are left out. ``(group keys, counts, first and last times, pair keys, pair counts)``."""
    n = len(cell)
    slots, keys = _table(n)
    group = np.empty(n, np.int64)
    ng = 0
    for r in range(n):
        c = cell[r]
        if c < 0:
            group[r] = -1
            continue
        group[r], ng = _find(slots, keys, (c * n_ops + op[r]) * n_tech + tech[r], ng)
    count = np.zeros(ng, np.int64)
    tmin = np.full(ng, np.nan)
    tmax = np.full(ng, np.nan)
    nbins = dbm_max - dbm_min + 1
    pslots, pkeys = _table(n)
    pcount = np.zeros(n, np.int64)
    npairs = 0
    for r in range(n):
        g = group[r]
        if g < 0:
            continue
        count[g] += 1
        tv = t[r]
        if not np.isnan(tv):  # np.fmin and np.fmax: a NaN gives way to a number
            if np.isnan(tmin[g]) or tv < tmin[g]:
                tmin[g] = tv
            if np.isnan(tmax[g]) or tv > tmax[g]:
                tmax[g] = tv
        s = sig[r]
        if np.isfinite(s):
            s = min(max(np.rint(s), dbm_min), dbm_max)  # clipped as a float, then made an integer
            p, npairs = _find(pslots, pkeys, g * nbins + (np.int64(s) - dbm_min), npairs)
            pcount[p] += 1
    return keys[:ng].copy(), count, tmin, tmax, pkeys[:npairs].copy(), pcount[:npairs].copy()


@njit
def _mix(x):
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit
def _bits(bits, values, r):
    """A float's IEEE bits, with one NaN and one zero (covgap.dedupe._bits)."""
    v = values[r]
    if np.isnan(v):
        return np.uint64(0x7FF8000000000000)
    if v == 0.0:
        return np.uint64(0)
    return bits[r]


@njit
def row_keys(lon, lat, sig, t, op, op_hash, tech, tech_hash):
    """covgap.dedupe.measurement_keys of rows whose coordinates are already clipped and rounded, one pass."""
    n = len(lon)
    out = np.empty(n, np.uint64)
    lon_bits, lat_bits = lon.view(np.uint64), lat.view(np.uint64)
    sig_bits, t_bits = sig.view(np.uint64), t.view(np.uint64)
    for r in range(n):
        h = _mix(_bits(lon_bits, lon, r) ^ np.uint64(0x9E3779B97F4A7C15))
        h = _mix(h ^ _bits(lat_bits, lat, r))
        h = _mix(h ^ _bits(sig_bits, sig, r))
        h = _mix(h ^ _bits(t_bits, t, r))
        h = _mix(h ^ op_hash[op[r]])
        out[r] = _mix(h ^ tech_hash[tech[r]])
    return out


@njit
def _bucket_starts(keys, shift, mask, nb):
    """Where each of ``nb`` buckets starts in a counting sort of ``keys`` by their bits ``(key >> shift) & mask``,
    and where the last ends (:func:`sort_keys`, :func:`spool_pairs`)."""
    starts = np.zeros(nb + 1, np.int64)
    for i in range(len(keys)):
        starts[np.int64((keys[i] >> shift) & mask) + 1] += 1
    for j in range(nb):
        starts[j + 1] += starts[j]
    return starts


@njit
def sort_keys(keys):
    """``keys`` (uint64) sorted; fast when they are hashes (covgap.dedupe's row keys). Above the highest bit
    in which two keys differ all are the same; the keys are scattered into buckets by the bits just
    below it, about four keys a bucket, and each bucket is sorted by insertion (a crowded one by
    ``np.sort``: many equal keys, or keys that are not uniform). Three times as fast as ``np.sort``
    on a partition of 312,500 hashes; the same result, whatever the keys."""
    n = len(keys)
    differ = np.uint64(0)
    for i in range(n):
        differ |= keys[i] ^ keys[0]
    high = 0  # the bits from here up are the same in every key
    while high < 64 and (differ >> np.uint64(high)) != np.uint64(0):
        high += 1
    b = 0
    while (np.int64(1) << b) < n // 4 and b < 24 and b < high:
        b += 1
    if b == 0:  # a few keys, or all the same
        return np.sort(keys)
    out = np.empty_like(keys)
    shift = np.uint64(high - b)
    mask = np.uint64((np.int64(1) << b) - 1)
    nb = np.int64(1) << b
    starts = _bucket_starts(keys, shift, mask, nb)
    pos = starts[:nb].copy()
    for i in range(n):
        k = keys[i]
        j = np.int64((k >> shift) & mask)
        out[pos[j]] = k
        pos[j] += 1
    for j in range(nb):
        a, e = starts[j], starts[j + 1]
        if e - a > 32:
            out[a:e] = np.sort(out[a:e])
            continue
        for i in range(a + 1, e):
            v = out[i]
            m = i - 1
            while m >= a and out[m] > v:
                out[m + 1] = out[m]
                m -= 1
            out[m + 1] = v
    return out


@njit
def spool_pairs(keys, seqs, shift, n_parts):
    """``(key, seq)`` pairs ordered by partition (the key's bits from ``shift`` up; ``n_parts``, a power of
    two, of them), in their order within one, as an ``(n, 2)`` array, and where each partition starts
    (and the last ends): what covgap.dedupe.KeySpool.add makes of them by a stable argsort, in two passes."""
    n = len(keys)
    s = np.uint64(shift)
    bounds = _bucket_starts(keys, s, np.uint64(n_parts - 1), n_parts)
    pos = bounds[:n_parts].copy()
    out = np.empty((n, 2), np.uint64)
    for i in range(n):
        p = np.int64(keys[i] >> s)
        j = pos[p]
        out[j, 0] = keys[i]
        out[j, 1] = seqs[i]
        pos[p] = j + 1
    return out, bounds


#: Points projected together by :func:`locate`: each step of Horner's rule runs over them (vectorised).
LOCATE_CHUNK = 256


@njit
def locate(lon, lat, cx, cy, origin, grid, box, area_box, tol, kinds):
    """covgap.ingest.StudyAreaLocator's projection and cell test in one pass, for the points the polynomial
    projection may answer: ``(x, y, kind, exact)``. ``kind`` is 0 outside the study area, 1 inside, 2 to be
    tested exactly (a boundary cell, or off the grid in the area's box); ``exact`` marks the points to
    be projected again exactly (near a cell edge, outside ``box``, not a number), whose ``kind`` is
    left for that. The same arithmetic, in the same order, as the numpy code it stands for:
    ``cx[i, j]`` is the coefficient of u**i * v**j (j <= degree - i), evaluated by Horner's rule, a
    chunk of points at a time (a step of it depends on the one before: point after point, each
    would wait for it). ``origin``: (lon0, lat0, x0, y0); ``grid``: (x0, y0, size, nrows, ncols);
    ``box`` and ``area_box``: (west, south, east, north) in degrees and (minx, miny, maxx, maxy) in metres."""
    n = len(lon)
    degree = cx.shape[0] - 1
    lon0, lat0, px0, py0 = origin[0], origin[1], origin[2], origin[3]
    gx0, gy0, size = grid[0], grid[1], grid[2]
    nrows, ncols = grid[3], grid[4]
    west, south, east, north = box[0], box[1], box[2], box[3]
    x = np.empty(n)
    y = np.empty(n)
    kind = np.zeros(n, np.uint8)
    exact = np.zeros(n, np.bool_)
    u = np.empty(LOCATE_CHUNK)
    v = np.empty(LOCATE_CHUNK)
    ax = np.empty(LOCATE_CHUNK)
    ay = np.empty(LOCATE_CHUNK)
    xs = np.empty(LOCATE_CHUNK)
    ys = np.empty(LOCATE_CHUNK)
    for s in range(0, n, LOCATE_CHUNK):
        m = min(LOCATE_CHUNK, n - s)
        for k in range(m):
            u[k] = lon[s + k] - lon0
            v[k] = lat[s + k] - lat0
            xs[k] = 0.0
            ys[k] = 0.0
        for i in range(degree, -1, -1):
            top_x, top_y = cx[i, degree - i], cy[i, degree - i]
            for k in range(m):
                ax[k] = top_x
                ay[k] = top_y
            for j in range(degree - i - 1, -1, -1):
                c_x, c_y = cx[i, j], cy[i, j]
                for k in range(m):
                    ax[k] = ax[k] * v[k] + c_x
                    ay[k] = ay[k] * v[k] + c_y
            for k in range(m):
                xs[k] = xs[k] * u[k] + ax[k]
                ys[k] = ys[k] * u[k] + ay[k]
        for k in range(m):
            r = s + k
            xr = xs[k] + px0
            yr = ys[k] + py0
            x[r] = xr
            y[r] = yr
            cu = (xr - gx0) / size
            cv = (gy0 - yr) / size
            if not (abs(cu - np.rint(cu)) > tol and abs(cv - np.rint(cv)) > tol and lon[r] >= west
                    and lon[r] <= east and lat[r] >= south and lat[r] <= north):
                exact[r] = True
                continue
            col = np.floor(cu)
            row = np.floor(cv)
            if col >= 0 and col < ncols and row >= 0 and row < nrows:
                kind[r] = kinds[np.int64(row * ncols + col)]
            elif xr >= area_box[0] and xr <= area_box[2] and yr >= area_box[1] and yr <= area_box[3]:
                kind[r] = 2
    return x, y, kind, exact


@njit
def rehash(keys, size, n_slots):
    """An open-addressing table (:func:`_find`) of ``n_slots`` places (a power of two) for the first ``size``
    of ``keys``, which are distinct: covgap.cellstats.CellAccumulator's index of its groups."""
    slots = np.full(n_slots, -1, np.int64)
    for g in range(size):  # each key new to the table: added as number g, where it already is in keys
        _find(slots, keys, keys[g], g)
    return slots


@njit
def accumulate(slots, keys, size, n, tmin, tmax, hist, part_keys, part_n, part_tmin, part_tmax, hist_group, hist_bin,
               hist_count):
    """covgap.cellstats.CellAccumulator.add_partial: a block's groups found (or added, in their order) in the
    table ``slots`` of ``keys``, their counts added, times taken min and max as ``np.fmin`` and ``np.fmax``
    do, and their histogram entries added. The arrays have room for every group of the block; returns
    the count of groups after."""
    pos = np.empty(len(part_keys), np.int64)
    for g in range(len(part_keys)):
        p, size = _find(slots, keys, part_keys[g], size)
        pos[g] = p
        n[p] += part_n[g]
        t = part_tmin[g]
        if np.isnan(tmin[p]) or t < tmin[p]:
            tmin[p] = t
        t = part_tmax[g]
        if np.isnan(tmax[p]) or t > tmax[p]:
            tmax[p] = t
    for h in range(len(hist_group)):
        hist[pos[hist_group[h]], hist_bin[h]] += hist_count[h]
    return size
