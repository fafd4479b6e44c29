"""Fibre routes: existing along the trunks and to most villages, planned extensions."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import Point
from shapely.ops import substring

from samplegen.roads import merged_lanes
from samplegen.settings import (
    CENTRES_WITH_PLANNED_FIBRE,
    CENTRES_WITHOUT_EXISTING_FIBRE,
    DROP_DISTANCE,
    FIBRE_GOAL_AREA_SHARE,
    PLANNED_HILL_VILLAGES,
    TARGET_VILLAGE_PASS_SHARE,
    UTM,
)


def make_fibre(graph, roads, communes19, villages, rng):
    """Existing and planned fibre routes along roads.

    Existing: QL1 (Viettel 2016, VNPT 2017, MobiFone through both towns 2021), ĐT623 as far as
    Nghĩa Điền (Viettel 2018) and Nghĩa Kỳ (VNPT 2019), the roads to the commune centres except
    those in CENTRES_WITHOUT_EXISTING_FIBRE, then village by village (east first) the roads that
    link a village to the fibre network plus its lanes, until TARGET_VILLAGE_PASS_SHARE of the
    villages have more than 80% of their area within DROP_DISTANCE. Planned (2026-2028): ĐT623
    on to Nghĩa Lâm and Nghĩa Thắng, the road to Nghĩa Hòa, and a few western villages.
    """
    centre = {r["name"]: Point(r.centre_x, r.centre_y) for _, r in communes19.iterrows()}
    ql1 = roads.loc[roads.road_id == "QL1"].geometry.iloc[0]
    dt = roads.loc[roads.road_id == "DT623"].geometry.iloc[0]
    at = lambda name: dt.project(centre[name])  # noqa: E731
    routes = [
        ("Viettel", "existing", 2016, ql1),
        ("VNPT", "existing", 2017, ql1),
        ("Viettel", "existing", 2018, substring(dt, 0, at("Nghĩa Điền") + 600)),
        ("VNPT", "existing", 2019, substring(dt, 0, at("Nghĩa Kỳ") + 300)),
        ("Viettel", "planned", 2026, substring(dt, at("Nghĩa Điền") + 600, at("Nghĩa Lâm") + 400)),
        ("VNPT", "planned", 2027, substring(dt, at("Nghĩa Lâm") + 400, at("Nghĩa Thắng") + 500)),
    ]
    for town in ("Thị trấn La Hà", "Thị trấn Sông Vệ"):
        s = ql1.project(centre[town])
        routes.append(("MobiFone", "existing", 2021, substring(ql1, s - 1300, s + 1300)))
    no_fibre = [centre[n] for n in CENTRES_WITHOUT_EXISTING_FIBRE]
    near_unreached = lambda g: min(g.distance(p) for p in no_fibre) < DROP_DISTANCE + 100  # noqa
    done = set()
    for n, (name, path) in enumerate(sorted(graph.centre_paths.items())):  # centre roads
        geoms = [graph.edges[k]["geom"] for k in path if k not in done]
        done.update(path)
        if name not in CENTRES_WITHOUT_EXISTING_FIBRE:
            status, op, year = "existing", ["Viettel", "VNPT"][n % 2], int(rng.integers(2019, 2024))
        elif name in CENTRES_WITH_PLANNED_FIBRE:
            status, op, year = "planned", "VNPT", 2026
        else:
            continue
        for g in merge_lines(geoms):
            routes.append((op, status, year, g))
    return add_village_fibre(graph, routes, villages, near_unreached, rng)


def village_pass(villages, lines):
    """Share of each village's area within DROP_DISTANCE of the given lines."""
    if not lines:
        return np.zeros(len(villages))
    reach = shapely.union_all([g.buffer(DROP_DISTANCE, quad_segs=4) for g in lines])
    return np.array([g.intersection(reach).area / g.area for g in villages.geometry])


def path_to_network(graph, start, on_network):
    """Shortest road path (edge ids, no lanes) from a node to any node already on the network."""
    adj = graph.adjacency([k for k, e in enumerate(graph.edges) if e["kind"] != "lane"])
    dist, prev, todo = {start: 0.0}, {}, [(0.0, start)]
    while todo:
        todo.sort()
        d, n = todo.pop(0)
        if n in on_network:
            path = []
            while n != start:
                e, n = prev[n]
                path.append(e)
            return path[::-1]
        if d > dist.get(n, np.inf):
            continue
        for e, m in adj.get(n, []):
            nd = d + graph.edges[e]["geom"].length
            if nd < dist.get(m, np.inf):
                dist[m], prev[m] = nd, (e, n)
                todo.append((nd, m))
    return None


def add_village_fibre(graph, routes, villages, near_unreached, rng):
    """Connect villages (east first) to the existing fibre: the road path to the network and
    the village lanes, until TARGET_VILLAGE_PASS_SHARE pass the 80% goal; plan a few in the west."""
    existing = [r[3] for r in routes if r[1] == "existing"]
    net = shapely.union_all(existing)
    on_network = {n for n, xy in enumerate(graph.nodes) if net.distance(Point(xy)) < 1.0}
    fibred = {k for k, e in enumerate(graph.edges) if e["geom"].centroid.distance(net) < 1.0}
    lanes = {}
    for k, e in enumerate(graph.edges):
        if e["kind"] == "lane":
            lanes.setdefault(e["a"], []).append(k)
    share = village_pass(villages, existing)
    xs = villages.hub_x.values
    key = rng.random(len(villages)) + 1.5 * (xs - xs.min()) / (xs.max() - xs.min())
    order = np.argsort(-key, kind="stable")
    for i in order:
        if (share > FIBRE_GOAL_AREA_SHARE).mean() >= TARGET_VILLAGE_PASS_SHARE:
            break
        if villages.terrain.iat[i] == "hill":
            continue
        hub = graph.key.get((round(villages.hub_x.iat[i], 2), round(villages.hub_y.iat[i], 2)))
        if hub is None or share[i] > FIBRE_GOAL_AREA_SHARE:
            continue
        path = path_to_network(graph, hub, on_network)
        new = [k for k in (path or []) if k not in fibred] + lanes.get(hub, [])
        geoms = [graph.edges[k]["geom"] for k in new]
        if path is None or not geoms or any(near_unreached(g) for g in geoms) or any(
                graph.edges[k]["kind"] in ("national", "provincial") for k in new):
            continue
        op = ["Viettel", "VNPT", "MobiFone"][int(rng.choice(3, p=[0.5, 0.35, 0.15]))]
        year = int(rng.integers(2019, 2026))
        for g in merge_lines([graph.edges[k]["geom"] for k in new if graph.edges[k]["kind"]
                              != "lane"]) + [g for _, g in merged_lanes(graph, lanes.get(hub, []))]:
            routes.append((op, "existing", year, g))
            existing.append(g)
        fibred.update(new)
        on_network.update(n for k in new for n in (graph.edges[k]["a"], graph.edges[k]["b"]))
        near = (villages.geometry.distance(shapely.union_all(geoms)) < DROP_DISTANCE).values
        share[near] = village_pass(villages.loc[near], existing)
    # planned: a few hill villages near ĐT623 joined to it (its extension is planned too)
    dt_nodes = {n for e in graph.edges if e["road_id"] == "DT623" for n in (e["a"], e["b"])}
    dt = shapely.union_all([e["geom"] for e in graph.edges if e["road_id"] == "DT623"])
    hill = [i for i in range(len(villages)) if villages.terrain.iat[i] == "hill"]
    hill.sort(key=lambda i: dt.distance(Point(villages.hub_x.iat[i], villages.hub_y.iat[i])))
    for i in hill[:PLANNED_HILL_VILLAGES]:
        hub = graph.key.get((round(villages.hub_x.iat[i], 2), round(villages.hub_y.iat[i], 2)))
        if hub is None:
            continue
        path = path_to_network(graph, hub, dt_nodes | on_network) or []
        year = int(rng.integers(2027, 2029))
        for g in merge_lines([graph.edges[k]["geom"] for k in path if k not in fibred
                              and graph.edges[k]["road_id"] != "DT623"]):
            routes.append(("Viettel", "planned", year, g))
        fibred.update(path)
        for _, g in merged_lanes(graph, lanes.get(hub, [])):
            routes.append(("Viettel", "planned", year, g))
    routes.sort(key=lambda r: (r[1] != "existing", r[2]))
    return gpd.GeoDataFrame({
        "route_id": [f"F{i + 1:03d}" for i in range(len(routes))],
        "operator": [r[0] for r in routes],
        "status": [r[1] for r in routes],
        "year": [int(r[2]) for r in routes],
    }, geometry=[r[3] for r in routes], crs=UTM)


def merge_lines(lines):
    """Merge touching polylines into as few LineStrings as possible."""
    if not lines:
        return []
    merged = shapely.line_merge(shapely.union_all(lines))
    return [g for g in shapely.get_parts(merged) if g.geom_type == "LineString"]
