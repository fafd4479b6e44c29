"""The measurement campaigns: drive tests, crowdsourced phones, G-NetTrack logs."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import shapely
from shapely.geometry import LineString, Point
from shapely.ops import substring

from samplegen.geo import xy_to_lonlat
from samplegen.radio import measure, nr_upgrade
from samplegen.settings import (
    DRIVE_DAYS,
    DRIVE_SPACING_M,
    GNT_HEADER,
    GNT_LOST_SERVICE_ROWS,
    GNT_PREFIX_ROWS,
    N_PHONE_HOMES,
    N_PHONE_ROWS,
    N_UNMEASURED_VILLAGES,
    OPERATORS,
    P_SKIP_LANE,
    P_SKIP_LEAF_ROAD,
    PHONE_CAMPAIGN_COMMUNES,
    PHONE_DATES,
    READINGS_PER_HOME,
    SPEED_MS,
    TRANSIT_S,
    TZ,
)


def dfs_walk(graph, edge_ids, start):
    """Drive every chosen edge out and back, depth first, from the start node."""
    adj = graph.adjacency(edge_ids)
    walk, seen = [], set()

    def visit(n):
        for e, m in adj.get(n, []):
            if e in seen:
                continue
            seen.add(e)
            walk.append((e, n))
            visit(m)
            walk.append((e, m))

    visit(start)
    return walk


def walk_path(graph, walk):
    """Concatenate a walk into one polyline with the speed of each piece."""
    pieces = []
    for e, frm in walk:
        edge = graph.edges[e]
        coords = list(edge["geom"].coords)
        if edge["a"] != frm:
            coords = coords[::-1]
        pieces.append((coords, SPEED_MS[edge["kind"]]))
    return pieces


def sample_along(pieces, t0, spacing, rng, jitter=3.0):
    """Points every ~spacing m along a path, with timestamps (s) from piece speeds."""
    xs, ys, ts, sp = [], [], [], []
    t, carry = t0, 0.0
    for coords, speed in pieces:
        line = LineString(coords)
        speed = speed * rng.uniform(0.85, 1.15)
        s = carry
        while s < line.length:
            p = line.interpolate(s)
            xs.append(p.x + rng.normal(0, jitter))
            ys.append(p.y + rng.normal(0, jitter))
            ts.append(t + s / speed)
            sp.append(speed)
            s += rng.uniform(*spacing) if isinstance(spacing, tuple) else spacing * speed
        carry = s - line.length
        t += line.length / speed
    return np.array(xs), np.array(ys), np.array(ts), np.array(sp)


def iso(day, seconds):
    """ISO 8601 local timestamp with offset for a date string and seconds after midnight."""
    d = datetime.fromisoformat(day).replace(tzinfo=TZ) + timedelta(seconds=int(seconds))
    return d.isoformat(timespec="seconds")


def drive_tests(graph, villages, grid, fields, sites, skipped, rng):
    """Multi-SIM scanner drive tests: one row per operator at each point, one file per day."""
    files, points = {}, []
    for day, regions, (hh, mm) in DRIVE_DAYS:
        t0, parts = hh * 3600 + mm * 60, []
        for chosen in choose_drive_edges(graph, villages, regions, skipped):
            walk = dfs_walk(graph, chosen, graph.edges[chosen[0]]["a"])
            xs, ys, ts, _ = sample_along(walk_path(graph, walk), t0, DRIVE_SPACING_M, rng)
            parts.append((xs, ys, ts))
            t0 = ts[-1] + TRANSIT_S  # drive over to the next area
        xs, ys, ts = (np.concatenate(a) for a in zip(*parts))
        ts = lunch_break(ts)
        per_op = {}
        for name, *_ in OPERATORS:
            tech, level = measure(grid, fields, name, xs, ys, rng)
            per_op[name] = nr_upgrade(sites, name, xs, ys, tech, level, rng)
        lon, lat = xy_to_lonlat(xs, ys)
        lines = []
        for i in range(len(xs)):
            stamp = iso(day, ts[i])
            for name, *_ in OPERATORS:
                tech, level = per_op[name][0][i], per_op[name][1][i]
                lines.append(f"{stamp},{lat[i]:.6f},{lon[i]:.6f},{name},{tech or 'NO SERVICE'},"
                             f"{'' if level is None else level}")
        files[f"drive_test_{day}.csv.gz"] = lines  # scanner logs are large: shipped compressed
        points.append(np.column_stack([xs, ys]))
    return files, points


def lunch_break(ts):
    """Shift everything after 11:30 by 90 minutes (lunch), keeping the order."""
    return np.where(ts > 11.5 * 3600, ts + 5400, ts)


def choose_unmeasured(graph, villages, rng):
    """Pick N_UNMEASURED_VILLAGES villages (thôn, not town blocks) that nobody measures: villages
    whose only roads are their own dead-end access roads (so nothing else has to drive through
    them). Returns their ids and the road edges the drive teams must then leave out."""
    roads = [k for k, e in enumerate(graph.edges) if e["kind"] != "lane"]
    deg = np.bincount(np.array([[graph.edges[k]["a"], graph.edges[k]["b"]] for k in roads])
                      .ravel(), minlength=len(graph.nodes))
    tree = shapely.STRtree([graph.edges[k]["geom"] for k in roads])
    options = []
    for _, v in villages.iterrows():
        hub = graph.key.get((round(v.hub_x, 2), round(v.hub_y, 2)))
        crossing = [roads[j] for j in tree.query(v.geometry, predicate="intersects")]
        own = [k for k in crossing if graph.edges[k]["kind"] == "village"
               and hub in (graph.edges[k]["a"], graph.edges[k]["b"]) and deg[hub] == 1]
        if len(own) == len(crossing) and v.terrain != "town":
            options.append((v.village_id, crossing))
    pick = sorted(rng.choice(len(options), size=min(N_UNMEASURED_VILLAGES, len(options)),
                             replace=False))
    ids = [options[i][0] for i in pick]
    return ids, {k for i in pick for k in options[i][1]}


def skipped_lanes(graph, villages, unmeasured, rng):
    """Village lanes the drive team never enters: every lane of the unmeasured villages and a
    share P_SKIP_LANE of the others (the same on every day)."""
    away = villages[villages.village_id.isin(unmeasured)].union_all()
    out = set()
    for k, e in enumerate(graph.edges):
        if e["kind"] != "lane":
            continue
        if (not away.is_empty and e["geom"].intersects(away)) or rng.random() < P_SKIP_LANE:
            out.add(k)
    return out


def skipped_leaf_roads(graph, rng):
    """Dead-end village roads the drive team never enters (the same on every day)."""
    roads = [k for k, e in enumerate(graph.edges) if e["kind"] != "lane"]
    deg = np.bincount(np.array([[graph.edges[k]["a"], graph.edges[k]["b"]] for k in roads])
                      .ravel(), minlength=len(graph.nodes))
    leaf = [k for k in roads if graph.edges[k]["kind"] == "village"
            and min(deg[graph.edges[k]["a"]], deg[graph.edges[k]["b"]]) == 1]
    return {k for k in leaf if rng.random() < P_SKIP_LEAF_ROAD}


def choose_drive_edges(graph, villages, regions, skipped):
    """Roads and village lanes driven on a day (none of the skipped ones) within the regions, as
    connected groups of edge ids, each starting with a trunk edge when it has one."""
    inside = villages[villages.commune_2025.isin(regions)].union_all().buffer(150)
    keep = [k for k, e in enumerate(graph.edges) if k not in skipped and e["geom"].centroid.within(inside)]
    adj = graph.adjacency(keep)
    groups, seen = [], set()
    for k in keep:  # trunk edges come first in graph order
        if graph.edges[k]["a"] in seen:
            continue
        comp, stack = {graph.edges[k]["a"]}, [graph.edges[k]["a"]]
        while stack:
            n = stack.pop()
            for _, m in adj.get(n, []):
                if m not in comp:
                    comp.add(m)
                    stack.append(m)
        seen |= comp
        group = [j for j in keep if graph.edges[j]["a"] in comp]
        if sum(graph.edges[j]["geom"].length for j in group) > 3000:  # skip stray bits
            groups.append(group)
    return groups


def phone_points(villages, vgrid, density, grid, fields, sites, exclude, rng):
    """Crowdsourced phone readings in the villages of the campaign communes: N_PHONE_HOMES phones,
    homes ∝ households and within each village ∝ the settlement density, each on one operator and
    logging READINGS_PER_HOME readings within 10 m of home at random times."""
    ok = ~villages.village_id.isin(exclude) & villages.commune_2025.isin(PHONE_CAMPAIGN_COMMUNES)
    idx = np.flatnonzero(ok)
    p = villages.households.values[idx] / villages.households.values[idx].sum()
    pick = idx[rng.choice(len(idx), size=N_PHONE_HOMES, p=p)]
    xs, ys = np.empty(N_PHONE_HOMES), np.empty(N_PHONE_HOMES)
    cells = {}
    for j, v in enumerate(pick):
        if v not in cells:
            r, c = np.nonzero(vgrid == v + 1)
            w = density[r, c] + 1.0
            cells[v] = (r, c, w / w.sum())
        r, c, w = cells[v]
        i = rng.choice(len(r), p=w)
        xs[j], ys[j] = grid.X[r[i], c[i]], grid.Y[r[i], c[i]]
        dx, dy = rng.uniform(-25, 25, 2)
        if villages.geometry.iat[v].contains(Point(xs[j] + dx, ys[j] + dy)):
            xs[j], ys[j] = xs[j] + dx, ys[j] + dy
    shares = np.array([o[5] for o in OPERATORS])
    ops = np.repeat(rng.choice(len(OPERATORS), size=N_PHONE_HOMES, p=shares / shares.sum()), READINGS_PER_HOME)
    xs = np.repeat(xs, READINGS_PER_HOME) + rng.uniform(-10, 10, N_PHONE_ROWS)
    ys = np.repeat(ys, READINGS_PER_HOME) + rng.uniform(-10, 10, N_PHONE_ROWS)
    d0, d1 = (datetime.fromisoformat(d) for d in PHONE_DATES)
    days = rng.integers(0, (d1 - d0).days + 1, N_PHONE_ROWS)
    secs = rng.integers(6 * 3600, 22 * 3600, N_PHONE_ROWS)
    order = np.lexsort((secs, days))
    rows = []
    for k, (name, *_) in enumerate(OPERATORS):
        m = ops == k
        tech, level = measure(grid, fields, name, xs[m], ys[m], rng)
        tech, level = nr_upgrade(sites, name, xs[m], ys[m], tech, level, rng)
        for j, t, lv in zip(np.flatnonzero(m), tech, level):
            rows.append((j, name, t, lv))
    by_j = {j: (n, t, lv) for j, n, t, lv in rows}
    lon, lat = xy_to_lonlat(xs, ys)
    lines = []
    for j in order:
        n, t, lv = by_j[j]
        day = (d0 + timedelta(days=int(days[j]))).date().isoformat()
        lines.append(f"{iso(day, secs[j])},{lat[j]:.6f},{lon[j]:.6f},{n},{t or 'no service'},"
                     f"{'' if lv is None else lv}")
    return lines, np.column_stack([xs, ys])


def gnettrack_route(graph, roads, communes19, district, which, skipped):
    """Polyline pieces (coords, speed) of a G-NetTrack trip."""
    centre = {r["name"]: Point(r.centre_x, r.centre_y) for _, r in communes19.iterrows()}
    ql1 = roads.loc[roads.road_id == "QL1"].geometry.iloc[0]
    dt = roads.loc[roads.road_id == "DT623"].geometry.iloc[0]
    if which == "east":
        # ĐT623 from Nghĩa Kỳ to La Hà, QL1 south to the district edge, back north past La Hà
        # and on out of the district toward Quảng Ngãi city (the logger was left running)
        la_ha = ql1.project(centre["Thị trấn La Hà"])
        inside = ql1.intersection(district)
        south_edge = max(ql1.project(Point(g.coords[-1])) for g in shapely.get_parts(inside))
        north_edge = min(ql1.project(Point(g.coords[0])) for g in shapely.get_parts(inside))
        leg1 = substring(dt, dt.project(centre["Nghĩa Kỳ"]), 0)
        leg2 = substring(ql1, la_ha, south_edge - 100)
        leg3 = substring(ql1, south_edge - 100, max(north_edge - 1500, 0))
        return [(list(leg1.coords), 10.0), (list(leg2.coords), 12.0), (list(leg3.coords), 12.0)]
    # west: motorbike from Nghĩa Kỳ along ĐT623 and the Trà Giang roads (depth first)
    tra = communes19.loc[communes19.commune_2025 == "Trà Giang"].union_all().buffer(100)
    first = dt.project(centre["Nghĩa Kỳ"])
    edges = [k for k, e in enumerate(graph.edges)
             if e["kind"] != "lane" and k not in skipped and e["geom"].centroid.within(tra)
             or (e["road_id"] == "DT623" and dt.project(e["geom"].centroid) > first)]
    ends = sorted({n for k in edges for n in (graph.edges[k]["a"], graph.edges[k]["b"])})
    start = graph.nearest(centre["Nghĩa Kỳ"].coords[0], ends)
    pieces = walk_path(graph, dfs_walk(graph, edges, start))
    out, total = [], 0.0
    for coords, sp in pieces:
        out.append((coords, sp * 1.1))
        total += LineString(coords).length
        if total > 24000:
            break
    return out


def gnettrack_log(operator, day, start, interval, pieces, grid, fields, servers, sites,
                  district, terrain, rng):
    """One G-NetTrack-Pro-style log (tab separated) and counts of its deliberate bad rows."""
    mccmnc = next(o[1] for o in OPERATORS if o[0] == operator)
    xs, ys, ts, speed = sample_along(pieces, start[0] * 3600 + start[1] * 60, interval, rng)
    tech, level = measure(grid, fields, operator, xs, ys, rng)
    tech, level = nr_upgrade(sites, operator, xs, ys, tech, level, rng)
    deepest = np.argsort(grid.bilinear(fields[operator], xs, ys), kind="stable")
    for i in deepest[:GNT_LOST_SERVICE_ROWS.get(operator, 0)]:  # phone lost the network
        tech[i] = level[i] = None
    lon, lat = xy_to_lonlat(xs, ys)
    r, c = grid.cell_of(xs, ys)
    server = servers[operator][r, c]
    alt = np.rint(8 + 4.0 * terrain[r, c] + rng.normal(0, 3, len(xs))).astype(int)
    rows = []
    n_dash, n_zero = GNT_PREFIX_ROWS[operator]
    for i in range(len(xs)):
        stamp = (datetime.fromisoformat(day) + timedelta(seconds=int(ts[i])))
        s = sites.loc[server[i]]
        rows.append(gnt_row(stamp, lon[i], lat[i], speed[i], operator, mccmnc, tech[i], level[i],
                            s, xs[i], ys[i], alt[i], rng))
    for k in range(n_dash + n_zero):  # phone still looking for GPS: same place, no position
        row = rows[k].copy()
        row[1] = row[2] = "-" if k < n_dash else "0"
        row[3] = row[22] = "-"
        rows[k] = row
    bad = {"no_fix_dash": n_dash, "no_fix_zero": n_zero,
           "no_service": sum(t is None for t in tech)}
    outside = ~shapely.contains_xy(district, xs, ys)
    bad["outside_district"] = int(outside.sum())
    if operator == "Viettel":  # one exact duplicate line (the app wrote a row twice)
        k = len(rows) // 2
        rows.insert(k + 1, list(rows[k]))
        bad["duplicate"] = 1
    return ["\t".join(GNT_HEADER)] + ["\t".join(r) for r in rows], bad


def gnt_row(stamp, lon, lat, speed, operator, mccmnc, tech, level, site, x, y, alt, rng):
    """Fields of one G-NetTrack row ('-' where the app has no value)."""
    mcc, mnc = mccmnc[:3], mccmnc[3:]
    site_no = int(site.site_id.split("-")[1])
    base = {"Viettel": 40000, "VNPT-VinaPhone": 20000, "MobiFone": 10000, "Vietnamobile": 50000}
    tac = 41000 + 10 * ["Viettel", "VNPT-VinaPhone", "MobiFone", "Vietnamobile"].index(operator)
    sector = 1 + int(((math.degrees(math.atan2(x - site.x, y - site.y)) + 360) % 360) // 120)
    f = dict.fromkeys(GNT_HEADER, "-")
    f.update({"Timestamp": stamp.strftime("%Y.%m.%d_%H.%M.%S"), "Longitude": f"{lon:.6f}",
              "Latitude": f"{lat:.6f}", "Speed": str(int(round(speed * 3.6))),
              "Operatorname": operator, "Operator": mccmnc, "DL_bitrate": "0",
              "UL_bitrate": "0", "Altitude": str(int(alt)),
              "Accuracy": str(int(rng.integers(3, 13)))})
    if tech in ("LTE", "NR"):
        enb = base[operator] + site_no
        f.update({"CGI": f"{mcc}-{mnc}-{tac}-{enb * 256 + sector}", "Node": str(enb),
                  "CellID": str(sector), "LAC": str(tac), "NetworkTech": tech,
                  "NetworkMode": tech, "Level": str(level),
                  "Qual": str(int(np.clip(round(-8 + (level + 95) / 8 + rng.normal(0, 1.5)),
                                          -20, -3))),
                  "SNR": str(int(np.clip(round((level + 118) / 2.2 + rng.normal(0, 3)), -10, 30))),
                  "CQI": str(int(np.clip(round((level + 125) / 4 + rng.normal(0, 1)), 1, 15))),
                  "LTERSSI": str(int(level + 27 + rng.integers(0, 6))),
                  "ARFCN": "1650" if tech == "LTE" else "633984"})
    elif tech == "UMTS":
        cid = base[operator] * 10 + site_no * 10 + sector
        f.update({"CGI": f"{mcc}-{mnc}-{tac // 10}-{cid}", "CellID": str(cid),
                  "LAC": str(tac // 10), "NetworkTech": "UMTS", "NetworkMode": "HSPA+",
                  "Level": str(level),
                  "Qual": str(int(np.clip(round(-6 + (level + 85) / 6 + rng.normal(0, 1)), -24,
                                          -2))),
                  "ARFCN": "10612"})
    elif tech == "GSM":
        cid = base[operator] + site_no * 10 + sector
        f.update({"CGI": f"{mcc}-{mnc}-{tac // 10}-{cid}", "CellID": str(cid),
                  "LAC": str(tac // 10), "NetworkTech": "GSM", "NetworkMode": "EDGE",
                  "Level": str(level), "ARFCN": str(60 + site_no)})
    return [f[h] for h in GNT_HEADER]
