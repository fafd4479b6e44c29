"""Cell sites, the true LTE and 3G fields (COST-231 Hata, terrain, shadowing) and one phone reading."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from shapely.geometry import Point

from samplegen.geo import gaussian_filter, lonlat_to_xy, xy_to_lonlat
from samplegen.settings import (
    DEAD_BELOW,
    ENV_ANCHORS,
    F_MHZ,
    FALLBACK_BELOW,
    FAST_FADING_SIGMA_DB,
    FORCED_SITES,
    GRID_RES,
    GSM_BELOW_RSCP,
    HM_M,
    NO_SERVICE_BELOW,
    NO_SERVICE_RSCP_BELOW,
    NR_RANGE_M,
    NR_SITES_VIETTEL,
    OPERATORS,
    P_FALLBACK,
    P_NO_SERVICE,
    RSCP_MAX,
    RSCP_MIN,
    RSCP_OFFSET_DB,
    RSRP_MAX,
    RSRP_MIN,
    SHADOW_KERNEL_SIGMA_M,
    SHADOW_SIGMA_DB,
    SITE_MIN_DENSITY,
    SITE_PREFIX,
    SITE_SHARING,
    SITES_3G_ONLY,
    TERRAIN_MAX_DB,
    USABLE_3G,
    VALLEY_SIGMA_M,
)


def place_sites(district, communes19, density, grid, rng):
    """Cell sites per operator: first the few towers of the hill communes (FORCED_SITES, near
    their centres), then sites drawn with probability ∝ density^0.7 where at least
    SITE_MIN_DENSITY people/km² live, inside the district but outside the hill communes,
    keeping each operator's minimum spacing; some share another operator's tower."""
    hills = communes19.loc[communes19.terrain == "hill"].union_all()
    area = grid.rasterize([district.difference(hills)]) > 0
    ok = area & (density >= SITE_MIN_DENSITY)
    w = np.where(ok, density ** 0.7, 0.0).ravel()
    p = w / w.sum()
    centre = {r["name"]: (r.centre_x, r.centre_y) for _, r in communes19.iterrows()}
    sites = []
    for name, _mccmnc, n, eirp, spacing, _ in OPERATORS:
        mine = []
        forced = [centre[c] for op, c in FORCED_SITES if op == name]
        while len(mine) < n:
            others = [s for s in sites if s["operator"] != name]
            if forced:
                x, y = np.array(forced.pop(0)) + rng.uniform(-300, 300, 2)
            elif others and rng.random() < SITE_SHARING:
                s = others[int(rng.integers(len(others)))]
                if hills.contains(Point(s["x"], s["y"])):
                    continue
                x, y = s["x"], s["y"]
            else:
                i = rng.choice(len(p), p=p)
                x = grid.X.ravel()[i] + rng.uniform(-20, 20)
                y = grid.Y.ravel()[i] + rng.uniform(-20, 20)
            if any(math.hypot(x - s["x"], y - s["y"]) < spacing for s in mine):
                continue
            rho = float(grid.bilinear(density, x, y))
            height = rng.uniform(20, 30) if rho > 1500 else rng.uniform(30, 45)
            mine.append({"operator": name, "site_id": f"{SITE_PREFIX[name]}-{len(mine) + 1:02d}",
                         "x": float(x), "y": float(y), "height_m": round(float(height), 1),
                         "eirp_dbm": round(float(eirp + rng.uniform(-1, 1)), 1), "rho": rho})
        sites.extend(mine)
    df = pd.DataFrame(sites)
    df["lon"], df["lat"] = xy_to_lonlat(df.x.values, df.y.values)
    df["nr"] = False
    df["lte"] = True
    for op, commune in SITES_3G_ONLY:  # the forced site of that operator in that commune
        cx, cy = centre[commune]
        mine = df.index[df.operator == op]
        d = np.hypot(df.loc[mine, "x"] - cx, df.loc[mine, "y"] - cy)
        df.loc[d.idxmin(), "lte"] = False
    vt = df.index[df.operator == "Viettel"]
    df.loc[df.loc[vt].sort_values("rho", ascending=False).index[:NR_SITES_VIETTEL], "nr"] = True
    return df


def cost231_hata_db(d_km, hb_m):
    """COST-231 Hata urban path loss (dB), medium city, f = F_MHZ, hm = HM_M."""
    lf = math.log10(F_MHZ)
    a_hm = (1.1 * lf - 0.7) * HM_M - (1.56 * lf - 0.8)
    return (46.3 + 33.9 * lf - 13.82 * math.log10(hb_m) - a_hm
            + (44.9 - 6.55 * math.log10(hb_m)) * np.log10(d_km))


def environment_correction_db(density):
    """Okumura-Hata class correction from local population density (urban 0 ... rural -26.9)."""
    return np.interp(np.log10(density + 1.0), *ENV_ANCHORS)


def terrain_loss_db(grid, density, rng):
    """Smooth terrain/clutter loss: 0-30 dB valleys in the western hills, fading out eastward,
    strongest where nobody lives (the hills proper) and 40% of that in the settled valleys."""
    x_full, _ = lonlat_to_xy(108.700, 15.10)  # full strength west of here (Trà Giang)
    x_none, _ = lonlat_to_xy(108.735, 15.10)  # none east of here (eastern Nghĩa Điền)
    hill = np.clip((x_none - grid.X) / (x_none - x_full), 0, 1)
    z = gaussian_filter(rng.standard_normal(grid.shape), VALLEY_SIGMA_M / GRID_RES)
    z /= z.std()
    valley = 1.0 / (1.0 + np.exp(-(2.2 * z + 1.2)))
    lo, hi = math.log10(60.0), math.log10(400.0)
    empty = np.clip((hi - np.log10(density + 1.0)) / (hi - lo), 0, 1)
    return TERRAIN_MAX_DB * hill * valley * (0.4 + 0.6 * empty)


def true_fields(sites, density, grid, rng):
    """TRUE median LTE RSRP and 3G RSCP (dBm) per operator on the grid (keys NAME and NAME:3g,
    'best' and 'best:3g' over operators), the best LTE server index and the terrain. LTE comes
    from the upgraded sites only, 3G from every site; both share the operator's shadowing."""
    env = environment_correction_db(density)
    terrain = terrain_loss_db(grid, density, rng)
    fields, servers = {}, {}
    for name, *_ in OPERATORS:
        best = np.full(grid.shape, -np.inf)
        best3 = np.full(grid.shape, -np.inf)
        server = np.zeros(grid.shape, dtype=int)
        for i, s in sites[sites.operator == name].iterrows():
            d_km = np.maximum(np.hypot(grid.X - s.x, grid.Y - s.y) / 1000.0, 0.05)
            rsrp = s.eirp_dbm - (cost231_hata_db(d_km, s.height_m) + env) - terrain
            best3 = np.maximum(best3, rsrp + RSCP_OFFSET_DB)
            if not s.lte:
                continue
            better = rsrp > best
            best = np.where(better, rsrp, best)
            server = np.where(better, i, server)
        shadow = gaussian_filter(rng.standard_normal(grid.shape), SHADOW_KERNEL_SIGMA_M / GRID_RES)
        shadow *= SHADOW_SIGMA_DB / shadow.std()
        fields[name] = np.clip(best + shadow, RSRP_MIN, RSRP_MAX)
        fields[f"{name}:3g"] = np.clip(best3 + shadow, RSCP_MIN, RSCP_MAX)
        servers[name] = server
    fields["best"] = np.max([fields[n] for n, *_ in OPERATORS], axis=0)
    fields["best:3g"] = np.max([fields[f"{n}:3g"] for n, *_ in OPERATORS], axis=0)
    return fields, servers, terrain


def true_class(lte, umts):
    """The class covgap's method gives a cell with these TRUE medians: 1 covered, 2 weak 4G,
    5 no 4G (3G usable), 3 no service (covgap.cellstats.CellClass values)."""
    return np.select([lte >= -105, lte >= DEAD_BELOW, umts >= USABLE_3G], [1, 2, 5], default=3)


def measure(grid, fields, operator, x, y, rng):
    """Simulate one reading per point: technology and level (None = the app logged no service).

    The phone stays on LTE while LTE is good enough; below FALLBACK_BELOW it camps on 3G
    when 3G is stronger in RSRP terms (P_FALLBACK of the time), on GSM when 3G is weak too
    (RxLev about the 3G level), and logs no service where both are very weak."""
    lte = np.rint(grid.bilinear(fields[operator], x, y) + rng.normal(0, FAST_FADING_SIGMA_DB, len(x))).astype(int)
    umts = np.rint(grid.bilinear(fields[f"{operator}:3g"], x, y)
                   + rng.normal(0, FAST_FADING_SIGMA_DB, len(x))).astype(int)
    u = rng.random(len(x))
    v = rng.random(len(x))
    tech, level = [], []
    for i in range(len(x)):
        m, w = lte[i], umts[i]
        if m < NO_SERVICE_BELOW and w < NO_SERVICE_RSCP_BELOW and u[i] < P_NO_SERVICE:
            tech.append(None)
            level.append(None)
        elif m < FALLBACK_BELOW and (u[i] < P_FALLBACK or m < RSRP_MIN) and w - RSCP_OFFSET_DB > m - 6:
            if w >= GSM_BELOW_RSCP or v[i] < 0.6:
                tech.append("UMTS")
                level.append(int(np.clip(w, RSCP_MIN, RSCP_MAX)))
            else:
                tech.append("GSM")
                level.append(int(np.clip(w, -110, -48)))
        else:
            tech.append("LTE")
            level.append(int(min(max(m, RSRP_MIN), RSRP_MAX)))
    return tech, level


def nr_upgrade(sites, operator, x, y, tech, level, rng):
    """Viettel phones near a 5G site report NR (SS-RSRP = RSRP - 5 dB) half of the time."""
    if operator != "Viettel":
        return tech, level
    nr = sites[sites.nr]
    for i in range(len(x)):
        if tech[i] != "LTE" or level[i] < -100:
            continue
        d = np.hypot(nr.x.values - x[i], nr.y.values - y[i]).min()
        if d < NR_RANGE_M and rng.random() < 0.5:
            tech[i] = "NR"
            level[i] = level[i] - 5
    return tech, level
