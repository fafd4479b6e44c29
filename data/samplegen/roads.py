"""The road network: trunk roads, village roads and lanes as one graph."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import LineString, MultiPoint, Point
from shapely.ops import substring

from samplegen.geo import lonlat_to_xy, nfc
from samplegen.settings import DT623_WEST_END, LANE_MARGIN_M, P_VILLAGE_WITHOUT_ROAD, QL1_NORTH, QL1_SOUTH, TRUNK_NODE_SPACING, UTM


def wiggle(points, rng, amplitude=60.0, step=100.0):
    """A gently wiggling polyline through the given points (lateral sine offsets, pinned ends)."""
    out = [tuple(points[0])]
    for p, q in zip(points[:-1], points[1:]):
        p, q = np.asarray(p, float), np.asarray(q, float)
        length = float(np.hypot(*(q - p)))
        n = max(2, int(length / step))
        t = np.linspace(0, 1, n + 1)[1:]
        normal = np.array([-(q - p)[1], (q - p)[0]]) / max(length, 1e-9)
        amp = min(amplitude, 0.06 * length)
        ph = rng.uniform(0, 2 * np.pi, 2)
        off = amp * np.sin(np.pi * t) * (np.sin(2 * np.pi * t + ph[0]) + 0.5 * np.sin(
            5 * np.pi * t + ph[1]))
        seg = p[None] + t[:, None] * (q - p)[None] + off[:, None] * normal[None]
        out.extend(map(tuple, seg))
    return LineString(out)


class RoadGraph:
    """Roads as a graph: nodes are points, edges are polylines with a road id and kind."""

    def __init__(self):
        self.nodes, self.key = [], {}
        self.edges = []  # dicts: a, b, geom, road_id, kind
        self.centre_paths = {}  # commune name -> edge ids of its road to the trunk

    def node(self, xy):
        """Id of the node at xy (created on first use; coordinates matched to 1 cm)."""
        k = (round(xy[0], 2), round(xy[1], 2))
        if k not in self.key:
            self.key[k] = len(self.nodes)
            self.nodes.append((float(xy[0]), float(xy[1])))
        return self.key[k]

    def nearest(self, xy, among):
        """The node of ``among`` closest to xy."""
        return min(among, key=lambda n: math.hypot(self.nodes[n][0] - xy[0],
                                                   self.nodes[n][1] - xy[1]))

    def add(self, geom, road_id, kind):
        """Add an edge between the node at the polyline's first and last vertex."""
        a, b = self.node(geom.coords[0]), self.node(geom.coords[-1])
        self.edges.append({"a": a, "b": b, "geom": geom, "road_id": road_id, "kind": kind})

    def adjacency(self, edge_ids):
        """node -> list of (edge id, other node) over the chosen edges (stable order)."""
        adj = {}
        for e in edge_ids:
            a, b = self.edges[e]["a"], self.edges[e]["b"]
            adj.setdefault(a, []).append((e, b))
            adj.setdefault(b, []).append((e, a))
        return adj


def trunk_line(waypoints_xy, rng):
    """National or provincial road through waypoints, with a wider, gentle wiggle."""
    return wiggle(waypoints_xy, rng, amplitude=120.0, step=120.0)


def add_trunk(graph, line, district, road_id, kind, must_include=()):
    """Cut a trunk road into graph edges between nodes every TRUNK_NODE_SPACING m (inside the
    district only), plus any positions in must_include (e.g. a junction). Returns node ids."""
    inside = [line.project(Point(p)) for p in must_include]
    seg = line.intersection(district.buffer(1))
    parts = [g for g in shapely.get_parts(seg) if g.geom_type == "LineString"]
    lo = min(line.project(Point(g.coords[0])) for g in parts)
    hi = max(line.project(Point(g.coords[-1])) for g in parts)
    stops = sorted(set(np.round(np.concatenate([np.arange(lo, hi, TRUNK_NODE_SPACING), [hi],
                                                 inside]), 3)))
    ids = []
    for s0, s1 in zip(stops[:-1], stops[1:]):
        graph.add(substring(line, s0, s1), road_id, kind)
    for s in stops:
        ids.append(graph.node(line.interpolate(s).coords[0]))
    return ids


def make_roads(communes19, villages, district, rng):
    """QL1 (north-south through La Hà and Sông Vệ), provincial road ĐT623 westward through the
    commune centres, and a minimum spanning tree of smaller roads to every commune centre and
    most village hubs (Delaunay candidates; edges leaving the district are penalised)."""
    centre = {r["name"]: (r.centre_x, r.centre_y) for _, r in communes19.iterrows()}
    xy = lambda ll: lonlat_to_xy(*ll)  # noqa: E731
    ql1 = trunk_line([xy(p) for p in QL1_NORTH] + [centre["Thị trấn La Hà"],
                      centre["Thị trấn Sông Vệ"]] + [xy(p) for p in QL1_SOUTH], rng)
    neck = communes19.loc[communes19.commune_2025 == "Nghĩa Giang"].union_all().buffer(30)
    neck = neck.intersection(communes19.loc[communes19.commune_2025 == "Tư Nghĩa"]
                             .union_all().buffer(30)).centroid
    dt623 = trunk_line([centre["Thị trấn La Hà"], centre["Nghĩa Trung"], neck.coords[0],
                        centre["Nghĩa Kỳ"], centre["Nghĩa Điền"], centre["Nghĩa Lâm"],
                        centre["Nghĩa Thắng"], xy(DT623_WEST_END)], rng)
    graph = RoadGraph()
    trunk_nodes = add_trunk(graph, ql1, district, "QL1", "national",
                            must_include=[centre["Thị trấn La Hà"], centre["Thị trấn Sông Vệ"]])
    trunk_nodes += add_trunk(graph, dt623, district, "DT623", "provincial",
                             must_include=[centre[n] for n in ("Thị trấn La Hà", "Nghĩa Trung",
                                           "Nghĩa Kỳ", "Nghĩa Điền", "Nghĩa Lâm", "Nghĩa Thắng")])
    on_trunk = shapely.union_all([ql1, dt623])
    targets = [(n, p) for n, p in centre.items() if on_trunk.distance(Point(p)) > 50]
    hubs = [(r.village_id, (r.hub_x, r.hub_y)) for _, r in villages.iterrows()]
    extra = [graph.node(p) for _, p in targets + hubs]
    nodes = sorted(set(trunk_nodes + extra))
    mst = spanning_tree(graph, nodes, trunk_nodes, district)
    centre_nodes = [graph.node(p) for _, p in targets]
    mst = drop_some_leaves(graph, mst, set(centre_nodes) | set(trunk_nodes), rng)
    paths = paths_to_trunk(mst, centre_nodes, set(trunk_nodes))
    on_path = {pair for path in paths.values() for pair in path}
    first_mst_edge = len(graph.edges)
    for n, (a, b) in enumerate(mst):
        geom = wiggle([graph.nodes[a], graph.nodes[b]], rng, step=160.0)
        kind = "commune" if (a, b) in on_path else "village"
        graph.add(geom, f"R{n + 1:03d}", kind)
    edge_of = {(a, b): first_mst_edge + n for n, (a, b) in enumerate(mst)}
    graph.centre_paths = {name: [edge_of[pair] for pair in paths[graph.node(p)]]
                          for name, p in targets}
    add_lanes(graph, villages, rng)
    roads = [("QL1", "national", "Quốc lộ 1", ql1), ("DT623", "provincial", "Đường tỉnh 623",
                                                      dt623)]
    for e in graph.edges:
        if e["kind"] in ("commune", "village"):
            roads.append((e["road_id"], e["kind"], "", e["geom"]))
    lanes = [k for k, e in enumerate(graph.edges) if e["kind"] == "lane"]
    for road_id, geom in merged_lanes(graph, lanes):
        roads.append((road_id, "lane", "", geom))
    gdf = gpd.GeoDataFrame({"road_id": [r[0] for r in roads], "kind": [r[1] for r in roads],
                            "name": [nfc(r[2]) for r in roads]},
                           geometry=[r[3] for r in roads], crs=UTM)
    return graph, gdf


def add_lanes(graph, villages, rng):
    """Lanes inside each village that has a road: along the village's two main axes, from the
    hub to LANE_MARGIN_M short of the village edge, skipping directions a road already takes.
    Each arm is a graph edge; the two arms of one axis share a road id (one lane)."""
    adj = graph.adjacency(range(len(graph.edges)))
    count = 0
    for _, v in villages.iterrows():
        hub = graph.key.get((round(v.hub_x, 2), round(v.hub_y, 2)))
        if hub is None or hub not in adj:
            continue
        h = np.array(graph.nodes[hub])
        taken = [np.arctan2(*(np.array(graph.nodes[m]) - h)[::-1]) for _, m in adj[hub]]
        inner = v.geometry.buffer(-LANE_MARGIN_M)
        ring = np.array(v.geometry.minimum_rotated_rectangle.exterior.coords)
        for axis in (ring[1] - ring[0], ring[2] - ring[1]):
            count += 1
            for sign in (1.0, -1.0):
                u = sign * axis / np.linalg.norm(axis)
                ang = np.arctan2(u[1], u[0])
                if any(abs((ang - t + np.pi) % (2 * np.pi) - np.pi) < np.radians(35)
                       for t in taken):
                    continue
                ray = LineString([h, h + 5000 * u]).intersection(inner)
                part = [g for g in shapely.get_parts(ray) if g.geom_type == "LineString"
                        and g.distance(Point(h)) < 1.0]
                if not part or part[0].length < 100:
                    continue
                end = max(part[0].coords, key=lambda c: math.hypot(c[0] - h[0], c[1] - h[1]))
                graph.add(wiggle([tuple(h), end], rng, amplitude=15.0, step=250.0),
                          f"L{count:03d}", "lane")


def merged_lanes(graph, edge_ids):
    """(road id, LineString) per lane: the arms of a lane joined through the hub."""
    out = []
    for road_id in sorted({graph.edges[k]["road_id"] for k in edge_ids}):
        arms = [graph.edges[k]["geom"] for k in edge_ids if graph.edges[k]["road_id"] == road_id]
        if len(arms) == 2:
            a, b = arms
            out.append((road_id, LineString(list(a.coords)[::-1] + list(b.coords)[1:])))
        else:
            out.append((road_id, arms[0]))
    return out


def spanning_tree(graph, nodes, trunk_nodes, district):
    """Kruskal over Delaunay edges; trunk nodes start already joined (they are on the trunk)."""
    pts = np.array([graph.nodes[n] for n in nodes])
    tri = shapely.delaunay_triangles(MultiPoint(pts), only_edges=True)
    where = {(round(x, 2), round(y, 2)): n for n, (x, y) in zip(nodes, pts)}
    area = district.buffer(60)
    cand = []
    for line in shapely.get_parts(tri):
        a = where[tuple(np.round(line.coords[0], 2))]
        b = where[tuple(np.round(line.coords[-1], 2))]
        outside = 1.0 - line.intersection(area).length / line.length
        if outside > 0.2 or line.length > 5000:
            continue
        cand.append((line.length * (1 + 20 * outside), min(a, b), max(a, b)))
    cand.sort()
    parent = {n: n for n in nodes}

    def find(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for n in trunk_nodes[1:]:
        parent[find(n)] = find(trunk_nodes[0])
    tree = []
    for _, a, b in cand:
        if a in trunk_nodes and b in trunk_nodes:
            continue
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
            tree.append((a, b))
    return tree


def drop_some_leaves(graph, tree, keep, rng):
    """Remove the access road of some leaf villages: their tracks are not on the map."""
    degree = np.bincount(np.array(tree).ravel(), minlength=len(graph.nodes))
    out = []
    for a, b in tree:
        leaf = [n for n in (a, b) if degree[n] == 1 and n not in keep]
        if leaf and rng.random() < P_VILLAGE_WITHOUT_ROAD:
            continue
        out.append((a, b))
    return out


def paths_to_trunk(tree, starts, trunk):
    """For each commune centre node, the tree edges (as stored in ``tree``) on its path to a
    trunk road."""
    adj = {}
    for a, b in tree:
        adj.setdefault(a, []).append((a, b))
        adj.setdefault(b, []).append((a, b))
    queue = [t for t in sorted(trunk) if t in adj]
    parent = {t: None for t in queue}
    while queue:
        n = queue.pop(0)
        for a, b in adj[n]:
            m = b if a == n else a
            if m not in parent:
                parent[m] = (n, (a, b))
                queue.append(m)
    paths = {}
    for s in starts:
        path, n = [], s
        while parent.get(n) is not None:
            n, pair = parent[n]
            path.append(pair)
        paths[s] = path
    return paths
