"""The real layers read in, the approximate former communes, and the villages."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import Point, Polygon

from samplegen.geo import as_areal, lonlat_to_xy, nfc, polygons_only, random_points_in, voronoi_pieces
from samplegen.settings import ATOM_AREA_M2, FORMER_COMMUNES, HOUSEHOLDS_PER_VILLAGE, MERGED_UNITS, MIN_VILLAGES, NAME_FIRST, NAME_SECOND, SOURCE, UTM


def load_communes_2025():
    """Read the four 2025 communes; resolve upstream overlaps and sliver gaps between them.

    The source outlines were simplified upstream (~50 m), leaving two small overlaps and eight
    sliver gaps between neighbours. An overlap stays with the commune listed first; a gap goes to
    the neighbour with the longest shared edge, so the four communes tile the district.
    """
    g = gpd.read_file(SOURCE / "communes_2025.geojson").to_crs(UTM)
    geoms = []
    for geom in g.geometry:
        if geoms:
            geom = geom.difference(shapely.union_all(geoms))
        geoms.append(max(polygons_only(geom), key=lambda p: p.area))
    district = shapely.union_all(geoms)
    for ring in district.interiors:
        gap = Polygon(ring)
        shared = [gap.boundary.intersection(p.boundary).length for p in geoms]
        k = int(np.argmax(shared))
        geoms[k] = as_areal([geoms[k], gap])
    out = gpd.GeoDataFrame({
        "commune_id": g["id"].astype(str),
        "name": [nfc(n) for n in g["name"]],
        "kind": "xã",
        "centre_lon": g["center_lon"],
        "centre_lat": g["center_lat"],
        "former_communes": [nfc(s) for s in g["former_communes"]],
        "area_km2": g["area_km2"],
        "population_2025": g["population_2025"].astype(int),
    }, geometry=geoms, crs=UTM)
    return out


def load_households():
    """Census 2019 households/persons per former commune, with the pre-2025 mergers folded in."""
    h = pd.read_csv(SOURCE / "households_2019.csv")
    h["commune"] = h["commune"].map(nfc)
    for unit, into in MERGED_UNITS.items():
        row = h.loc[h.commune == unit].iloc[0]
        h.loc[h.commune == into, "households_2019"] += row.households_2019
        h.loc[h.commune == into, "population_2019"] += row.population_2019
    h = h[~h.commune.isin(list(MERGED_UNITS))]
    return h.set_index("commune")


def make_atoms(commune, rng):
    """Cut a 2025 commune into ~0.05 km² Voronoi atoms (single polygons that tile it)."""
    n = max(50, int(commune.area / ATOM_AREA_M2))
    pieces = voronoi_pieces(random_points_in(commune, n, rng), commune)
    return [p for piece in pieces for p in polygons_only(piece)]


def power_assign(points, areas, seeds, targets, pinned):
    """Assign atoms to seeds by a power diagram whose weights are tuned to the target areas."""
    d2 = ((points[:, None, :] - seeds[None, :, :]) ** 2).sum(axis=2)
    w = np.zeros(len(seeds))
    for _ in range(400):
        label = np.argmin(d2 - w[None, :], axis=1)
        label[pinned >= 0] = pinned[pinned >= 0]
        got = np.bincount(label, weights=areas, minlength=len(seeds))
        w += 0.8 * (targets - got)
    return label


def make_contiguous(atoms, label, seeds):
    """Give every atom cut off from its commune's main part to the neighbour it touches most."""
    tree = shapely.STRtree(atoms)
    for _ in range(20):
        changed = False
        for k in range(len(seeds)):
            idx = np.flatnonzero(label == k)
            if len(idx) == 0:
                continue
            parts = polygons_only(shapely.union_all([atoms[i] for i in idx]))
            if len(parts) <= 1:
                continue
            seed = Point(seeds[k])
            keep = max(parts, key=lambda p: (p.buffer(1).contains(seed), p.area))
            for i in idx:
                if keep.buffer(1).contains(atoms[i].representative_point()):
                    continue
                nbr = [j for j in tree.query(atoms[i], predicate="intersects") if label[j] != k]
                if nbr:
                    label[i] = np.bincount(label[nbr]).argmax()
                    changed = True
        if not changed:
            break
    return label


def split_communes(communes25, households, density, grid, rng):
    """Split each 2025 commune among its former communes (approximate, generated)."""
    rows = []
    for _, c25 in communes25.iterrows():
        members = [fc for fc in FORMER_COMMUNES if fc[2] == c25["name"]]
        atoms = make_atoms(c25.geometry, rng)
        pts = np.array([a.representative_point().coords[0] for a in atoms])
        areas = np.array([a.area for a in atoms])
        seeds = np.array([lonlat_to_xy(*fc[3]) for fc in members])
        targets = np.array([fc[4] for fc in members], dtype=float)
        targets *= c25.geometry.area / targets.sum()
        pinned = np.full(len(atoms), -1)
        for k, fc in enumerate(members):
            if fc[6]:  # the 2025 centre must fall inside this former commune
                cx, cy = lonlat_to_xy(c25["centre_lon"], c25["centre_lat"])
                near = np.hypot(pts[:, 0] - cx, pts[:, 1] - cy) < 700
                pinned[near] = k
        label = power_assign(pts, areas, seeds, targets, pinned)
        label = make_contiguous(atoms, label, seeds)
        for k, fc in enumerate(members):
            geom = as_areal([atoms[i] for i in np.flatnonzero(label == k)])
            rows.append({"name": fc[0], "kind": fc[1], "commune_2025": c25["name"],
                         "terrain": fc[5], "seed": seeds[k], "geometry": geom,
                         "hub": c25 if fc[6] else None})
    order = [fc[0] for fc in FORMER_COMMUNES]
    rows.sort(key=lambda r: order.index(r["name"]))
    label_grid = grid.rasterize([r["geometry"] for r in rows])
    for k, r in enumerate(rows):
        r["centre_xy"] = commune_centre(r, label_grid == k + 1, density, grid)
    gdf = gpd.GeoDataFrame({
        "commune_id": [f"TN-{k + 1:02d}" for k in range(len(rows))],
        "name": [r["name"] for r in rows],
        "kind": [r["kind"] for r in rows],
        "commune_2025": [r["commune_2025"] for r in rows],
        "households_2019": [int(households.loc[r["name"], "households_2019"]) for r in rows],
        "population_2019": [int(households.loc[r["name"], "population_2019"]) for r in rows],
        "terrain": [r["terrain"] for r in rows],
        "centre_x": [r["centre_xy"][0] for r in rows],
        "centre_y": [r["centre_xy"][1] for r in rows],
    }, geometry=[r["geometry"] for r in rows], crs=UTM)
    return gdf


def commune_centre(row, mask, density, grid):
    """People's Committee point: the real 2025 centre for hub communes, else the densest place
    near the seed that is at least 300 m inside the commune."""
    if row["hub"] is not None:
        return lonlat_to_xy(row["hub"]["centre_lon"], row["hub"]["centre_lat"])
    inner = row["geometry"].buffer(-300)
    ok = mask & shapely.contains_xy(inner, grid.X, grid.Y)
    dist = np.hypot(grid.X - row["seed"][0], grid.Y - row["seed"][1])
    if not ok.any():  # a thin commune: any cell inside will do
        ok = mask
    score = np.where(ok, np.log(density + 1) - dist / 1000.0, -np.inf)
    r, c = np.unravel_index(np.argmax(score), score.shape)
    return float(grid.X[r, c]), float(grid.Y[r, c])


def weighted_kmeans(points, weights, k, rng, iterations=40):
    """Weighted k-means (k-means++ start): centres of equal-weight groups of points."""
    p = weights / weights.sum()
    centres = [points[rng.choice(len(points), p=p)]]
    for _ in range(1, k):
        d2 = np.min(((points[:, None, :] - np.array(centres)[None]) ** 2).sum(2), axis=1)
        q = weights * d2
        centres.append(points[rng.choice(len(points), p=q / q.sum())])
    centres = np.array(centres)
    for _ in range(iterations):
        lab = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(2), axis=1)
        for j in range(k):
            m = lab == j
            if m.any():
                centres[j] = np.average(points[m], axis=0, weights=weights[m])
    return centres


def tile_with_seeds(seeds, container):
    """Voronoi of seeds clipped to the container; stray fragments join the neighbour sharing
    the longest edge, so every village is one polygon and together they tile the container."""
    pieces = voronoi_pieces(seeds, container)
    main, strays = [], []
    for seed, piece in zip(seeds, pieces):
        parts = polygons_only(piece)
        parts.sort(key=lambda p: (p.contains(Point(seed)), p.area), reverse=True)
        main.append(parts[0])
        strays.extend(parts[1:])
    strays.sort(key=lambda p: -p.area)
    while strays:
        left = []
        for s in strays:
            shared = [s.boundary.intersection(m.boundary).length for m in main]
            j = int(np.argmax(shared))
            if shared[j] > 0:
                main[j] = as_areal([main[j], s])
            else:
                left.append(s)
        if len(left) == len(strays):  # touches nothing but other strays: give to nearest
            for s in left:
                j = int(np.argmin([s.distance(m) for m in main]))
                main[j] = as_areal([main[j], s])
            break
        strays = left
    return main


def largest_remainder(total, weights):
    """Split an integer total proportionally to weights (Hamilton), each share at least 1."""
    w = np.asarray(weights, dtype=float)
    quota = total * w / w.sum()
    out = np.floor(quota).astype(int)
    order = np.argsort(-(quota - out), kind="stable")
    out[order[: total - out.sum()]] += 1
    while (out < 1).any():  # borrow from the largest
        i, j = np.argmin(out), np.argmax(out)
        out[i] += 1
        out[j] -= 1
    return out


def village_names(n, is_town, rng):
    """Unique village names: 'Tổ dân phố 1..n' in a town, 'Thôn <two elements>' in a xã."""
    if is_town:
        return [f"Tổ dân phố {i + 1}" for i in range(n)]
    names = []
    while len(names) < n:
        name = f"Thôn {rng.choice(NAME_FIRST)} {rng.choice(NAME_SECOND)}"
        if name.split()[1] != name.split()[2] and name not in names:
            names.append(name)
    return [nfc(s) for s in names]


def make_villages(communes19, density, grid, rng):
    """Villages (thôn / tổ dân phố) tiling each former commune, placed where WorldPop has people."""
    label_grid = grid.rasterize(list(communes19.geometry))
    rows = []
    for k, c in communes19.iterrows():
        m = label_grid == k + 1
        pts = np.column_stack([grid.X[m], grid.Y[m]])
        w = density[m] ** 0.85 + 5.0
        n = max(MIN_VILLAGES, round(c.households_2019 / HOUSEHOLDS_PER_VILLAGE[c.terrain]))
        seeds = weighted_kmeans(pts, w, n, rng)
        order = np.lexsort((seeds[:, 0], -np.round(seeds[:, 1], -2)))  # north to south, west-east
        seeds = seeds[order]
        polys = tile_with_seeds(seeds, c.geometry)
        names = village_names(n, c.kind == "thị trấn", rng)
        for seed, poly, name in zip(seeds, polys, names):
            hub = seed if poly.contains(Point(seed)) else poly.representative_point().coords[0]
            rows.append({"name": name, "commune": c["name"], "commune_2025": c.commune_2025,
                         "terrain": c.terrain, "hub_x": hub[0], "hub_y": hub[1],
                         "geometry": poly})
    v = gpd.GeoDataFrame(rows, crs=UTM)
    v.insert(0, "village_id", [f"V{i + 1:03d}" for i in range(len(v))])
    # households and persons: each commune's census total spread over its villages in proportion
    # to WorldPop-weighted area (sum of people/km² over the 50 m cells inside the village)
    vgrid = grid.rasterize(list(v.geometry))
    weight = np.bincount(vgrid.ravel(), weights=density.ravel(), minlength=len(v) + 1)[1:]
    weight = np.maximum(weight, 1.0)
    v["households"] = 0
    v["population"] = 0
    for _, c in communes19.iterrows():
        idx = np.flatnonzero(v.commune == c["name"])
        v.loc[idx, "households"] = largest_remainder(c.households_2019, weight[idx])
        v.loc[idx, "population"] = largest_remainder(c.population_2019, weight[idx])
    return v, vgrid
