"""Plans: the cheapest way to the fibre target (and where to measure next).

Pure functions on the analysis results' parts (villages with their fibre indicators,
fibre routes, the road graph); nothing is read or written here. ``pipeline.analyse``
calls them and carries the plans in ``Results``; writers only format them.
"""

from __future__ import annotations

import heapq
import logging
import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from covgap import measurements as meas
from covgap.fibre import distance_to
from covgap.roads import RoadGraph

log = logging.getLogger(__name__)

#: What a village below the fibre goal needs (``needs`` column of the fibre plan).
NEEDS_SPUR = "spur"
NEEDS_IN_VILLAGE = "in-village cable"  # the route already runs within drop distance of the village's point
NEEDS_NO_ROUTE = "no existing route"

#: Households are counted in tenths in the knapsack (the village figures are rounded to 0.1).
HOUSEHOLD_UNIT = 0.1
#: Largest knapsack table (villages × household units) before the unit is made coarser.
MAX_TABLE_CELLS = 50_000_000

SOLVER = "exact: dynamic programming over households gained (0.1 household steps)"


@dataclass
class FibrePlan:
    """The fibre plan: each village below the goal with its spur, and the least-cost set per unit."""

    spurs: gpd.GeoDataFrame  # one row per village below the goal (spur line, or no geometry)
    units: pd.DataFrame  # one row per commune of the report level and one for the district


# --------------------------------------------------------------------------- spurs
def _dijkstra(graph, sources: dict[int, float]) -> tuple[dict[int, float], dict[int, int]]:
    """Shortest distances (``length_m``) from several sources, each with its own starting distance."""
    dist: dict[int, float] = {}
    pred: dict[int, int] = {}
    heap = [(d, n, -1) for n, d in sources.items()]
    heapq.heapify(heap)
    while heap:
        d, n, p = heapq.heappop(heap)
        if n in dist:
            continue
        dist[n] = d
        if p >= 0:
            pred[n] = p
        for m, attrs in graph[n].items():
            if m not in dist:
                heapq.heappush(heap, (d + attrs["length_m"], m, n))
    return dist, pred


#: Road points closer to a village than the closest one plus this (m) count as equally close (rounding).
TIE_M = 0.5


def _path_to(pred: dict[int, int], node: int) -> list[int]:
    path = [node]
    while path[-1] in pred:
        path.append(pred[path[-1]])
    return path[::-1]


def _road_spur(roads: RoadGraph, edges: np.ndarray, dist: np.ndarray, pred: dict[int, int], p: np.ndarray,
               drop: float):
    """The shortest cable along the roads to where the road network first comes within ``drop`` of ``p``,
    or, if it never does, to its closest point to ``p`` (then straight to ``drop`` of ``p``).

    Works on the road pieces themselves, not only their nodes: the entry into the drop circle (or
    the closest point) may lie inside a piece. Returns ``(length, node path, point on the road, end)``
    or None when no reached road piece qualifies.
    """
    a, b = roads.xy[edges[:, 0]], roads.xy[edges[:, 1]]
    d = b - a
    seg2 = np.maximum((d * d).sum(axis=1), 1e-12)
    t = np.clip(((p - a) * d).sum(axis=1) / seg2, 0.0, 1.0)
    closest = a + t[:, None] * d
    gap = np.hypot(*(closest - p).T)
    reached = np.isfinite(dist[edges[:, 0]]) | np.isfinite(dist[edges[:, 1]])
    if not reached.any():
        return None
    gmin = gap[reached].min()
    seg = np.sqrt(seg2)
    if gmin <= drop:  # enter the circle of radius drop: the part of each piece inside it is [t0, t1]
        f = a - p
        qb = 2 * (d * f).sum(axis=1)
        qc = (f * f).sum(axis=1) - drop * drop
        disc = qb * qb - 4 * seg2 * qc
        ok = reached & (disc >= 0)
        root = np.sqrt(np.maximum(disc, 0))
        t0 = np.clip((-qb - root) / (2 * seg2), 0, 1)
        t1 = np.clip((-qb + root) / (2 * seg2), 0, 1)
        ok &= gap <= drop
        from_a = dist[edges[:, 0]] + t0 * seg
        from_b = dist[edges[:, 1]] + (1 - t1) * seg
        tail = np.zeros(len(edges))
    else:  # the closest point of the network (ties within TIE_M), then straight
        ok = reached & (gap <= gmin + TIE_M)
        t0 = t1 = t
        from_a = dist[edges[:, 0]] + t * seg
        from_b = dist[edges[:, 1]] + (1 - t) * seg
        tail = gap - drop
    cost = np.where(ok, np.minimum(from_a, from_b) + tail, np.inf)
    e = int(np.argmin(cost))
    if not np.isfinite(cost[e]):
        return None
    use_a = from_a[e] <= from_b[e]
    node = int(edges[e, 0] if use_a else edges[e, 1])
    via = a[e] + (t0[e] if use_a else t1[e]) * d[e]
    end = _towards(via, p, tail[e]) if tail[e] > 0 else via
    return float(cost[e]), _path_to(pred, node), (via if tail[e] > 0 else None), end


def _towards(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    """The point ``length`` metres from ``a`` towards ``b``."""
    d = float(np.hypot(*(b - a)))
    return a if d <= 0 else a + (b - a) * min(1.0, length / d)


def compute_spurs(villages: gpd.GeoDataFrame, fibre: gpd.GeoDataFrame, *, drop_distance_m: float,
                  roads: RoadGraph | None = None, road_snap_m: float = 100.0) -> gpd.GeoDataFrame:
    """The spur each village below the fibre goal needs, as a line from the nearest existing route.

    Parameters
    ----------
    villages
        Villages with their fibre indicators (``households``, ``households_passed``,
        ``meets_fibre_goal``, ``spur_length_m``; :func:`covgap.fibre.compute_fibre_indicators`).
    fibre
        Fibre routes (``route_id``, ``operator``, ``status``).
    drop_distance_m
        A household is passed within this distance of a route.
    roads
        The road graph, or None for straight spurs.
    road_snap_m
        A spur along roads joins the road network at a road point within this distance of a route.

    Returns
    -------
    GeoDataFrame, one row per village below the goal: ``village`` (row index),
    ``households_gained``, ``needs`` (:data:`NEEDS_SPUR`, :data:`NEEDS_IN_VILLAGE` or
    :data:`NEEDS_NO_ROUTE`), ``spur_length_m``, ``spur_straight_m``, ``spur_along``
    (``roads`` or ``straight``), ``route_id`` and ``route_operator`` of the existing route the
    spur starts from, and the spur line (None when no spur).

    Notes
    -----
    * Straight: ``spur_straight_m = max(0, d(point, route) − drop_distance_m)`` with the
      village's interior point (``spur_length_m`` of the village indicators).
    * Along roads: from an existing route to a road point ``s`` within ``road_snap_m`` of
      it (straight, ``d(route, s)``), then along the shortest road path to the first point
      within drop distance of the village's point; where no road comes that close, to the
      road's closest point ``c`` to it and straight from there: ``d(route, s) + road(s, c) +
      d(c, point) − drop_distance_m``. The cable never leaves the roads before they come as
      close as they will to the village. A village no road reaches gets the straight spur.
    * Gain: the households not yet passed, ``households − households_passed``, assuming
      the spur brings the whole village within drop distance (a village's houses lie
      around its point; a large village may need more cable inside it).
    """
    below = np.flatnonzero(~villages["meets_fibre_goal"].astype(bool).to_numpy())
    existing = fibre[fibre["status"] == "existing"].reset_index(drop=True)
    route_geoms = existing.geometry.to_numpy()
    routes = shapely.union_all(route_geoms) if len(existing) else None
    owners = (meas.normalise_operator(existing["operator"].fillna("").astype(str).astype(object), "")
              if len(existing) else pd.Series([], dtype=object))
    rep = shapely.point_on_surface(villages.geometry.to_numpy()[below]) if len(below) else np.array([], dtype=object)
    hh = villages["households"].to_numpy(dtype=float)[below]
    passed = villages["households_passed"].to_numpy(dtype=float)[below]
    straight = villages["spur_length_m"].to_numpy(dtype=float)[below]

    edges = node_dist_all = pred = None
    if roads is not None and routes is not None and len(roads.xy):
        to_route = distance_to(shapely.points(roads.xy), routes)
        sources = {int(i): float(to_route[i]) for i in np.flatnonzero(to_route <= road_snap_m)}
        if sources:
            dist, pred = _dijkstra(roads.graph, sources)
            node_dist_all = np.full(len(roads.xy), np.inf)
            node_dist_all[np.fromiter(dist.keys(), dtype=np.int64)] = np.fromiter(dist.values(), dtype=float)
            edges = np.array([(a, b) for a, b in roads.graph.edges()], dtype=np.int64).reshape(-1, 2)

    # Nearest route pieces by a spatial index (the lowest index among equally near ones, as GEOS measuring
    # to the whole network would take): the union's parts for the point on the network, the routes for its id.
    if routes is not None:
        route_parts = shapely.get_parts(routes)
        part_tree, route_tree = shapely.STRtree(route_parts), shapely.STRtree(route_geoms)

    def nearest(tree: shapely.STRtree, point: shapely.Point) -> int:
        return int(np.min(tree.query_nearest(point, all_matches=True)))

    def from_network(point: shapely.Point) -> np.ndarray:
        """The point of the network nearest ``point``."""
        return shapely.get_coordinates(shapely.shortest_line(route_parts[nearest(part_tree, point)], point))[0]

    rows, geoms = [], []
    for k, i in enumerate(below):
        gain = max(0.0, hh[k] - passed[k])
        row = {"village": int(i), "households_gained": round(gain, 1), "spur_straight_m": straight[k],
               "spur_length_m": np.nan, "spur_along": "", "route_id": "", "route_operator": ""}
        geom = None
        if routes is None or not np.isfinite(straight[k]):
            row["needs"] = NEEDS_NO_ROUTE
        elif straight[k] <= 0:
            row["needs"] = NEEDS_IN_VILLAGE
            row["spur_length_m"] = 0.0
        else:
            row["needs"] = NEEDS_SPUR
            p = np.array([rep[k].x, rep[k].y])
            line = None
            if edges is not None:
                assert roads is not None and node_dist_all is not None and pred is not None  # set with edges
                found = _road_spur(roads, edges, node_dist_all, pred, p, drop_distance_m)
                if found is not None:
                    length, nodes, via, end_pt = found
                    first = roads.xy[nodes[0]]
                    on_route = from_network(shapely.Point(first))
                    pts = [on_route, *roads.xy[nodes], *([via] if via is not None else []), end_pt]
                    pts = [q for n, q in enumerate(pts) if n == 0 or np.hypot(*(q - pts[n - 1])) > 1e-6]
                    line = shapely.LineString(pts) if len(pts) > 1 else None
                    row["spur_length_m"] = round(float(length), 1)
                    row["spur_along"] = "roads"
            if line is None:
                a = from_network(rep[k])
                line = shapely.LineString([a, _towards(a, p, straight[k])])
                row["spur_length_m"] = float(straight[k])
                row["spur_along"] = "straight"
            geom = line
            r = nearest(route_tree, shapely.Point(line.coords[0]))
            row["route_id"] = str(existing["route_id"].iloc[r])
            row["route_operator"] = str(owners.iloc[r])
        rows.append(row)
        geoms.append(geom)
    cols = ["village", "households_gained", "needs", "spur_length_m", "spur_straight_m", "spur_along", "route_id",
            "route_operator"]
    frame = pd.DataFrame(rows, columns=cols)
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geoms, crs=villages.crs).to_numpy(), crs=villages.crs)


# --------------------------------------------------------------------------- knapsack
def least_cost_spurs(cost: np.ndarray, gain: np.ndarray, need: float, *,
                     unit: float = HOUSEHOLD_UNIT) -> tuple[np.ndarray, bool]:
    """The least-cost set of spurs whose households gained add up to *more than* ``need``.

    Parameters
    ----------
    cost
        Cost of each spur (≥ 0).
    gain
        Households each spur would gain (≥ 0).
    need
        Households still missing: ``goal × households − households passed``; ≤ 0 needs nothing.
    unit
        Household step of the table (gains are counted in whole steps, rounded down).

    Returns
    -------
    (chosen, reached): a boolean mask of the spurs chosen and whether they pass ``need``.
    When even every spur does not pass it, every spur is chosen and ``reached`` is False.

    Notes
    -----
    A covering knapsack solved exactly by dynamic programming: ``best[j]`` is the least
    cost of gaining at least ``j`` steps (``j`` capped at the steps needed, ``N =
    ⌊need / unit⌋ + 1``), updated once per spur, ``O(spurs × N)`` time and a table of
    ``spurs × N`` booleans to read the set back. Gains are rounded down to whole steps and
    the need up, so the set found always passes the target; with the village figures
    rounded to 0.1 household and ``unit = 0.1`` nothing is rounded and the set is optimal.
    A table over :data:`MAX_TABLE_CELLS` makes the step coarser (still passing, possibly
    not optimal; logged).
    """
    cost = np.asarray(cost, dtype=float)
    gain = np.asarray(gain, dtype=float)
    n = len(cost)
    if need < 0:  # already more than the goal
        return np.zeros(n, dtype=bool), True
    steps_needed = math.floor(round(need / unit, 6)) + 1
    if n * (steps_needed + 1) > MAX_TABLE_CELLS:
        factor = math.ceil(n * (steps_needed + 1) / MAX_TABLE_CELLS)
        log.warning("fibre plan: %d spurs × %d household steps is too large a table; counting in steps of %g "
                    "households (the set still passes the goal but may not be the cheapest)", n, steps_needed,
                    unit * factor)
        unit *= factor
        steps_needed = math.floor(round(need / unit, 6)) + 1
    w = np.floor(np.round(gain / unit, 6)).astype(np.int64)
    if w.sum() < steps_needed:
        return np.ones(n, dtype=bool), False
    N = steps_needed
    best = np.full(N + 1, np.inf)
    best[0] = 0.0
    take = np.zeros((n, N + 1), dtype=bool)
    top_from = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        g, c = int(w[i]), float(cost[i])
        if g <= 0:
            continue
        cand = best + c
        new = best.copy()
        if g < N:
            seg = cand[:N - g]
            better = seg < new[g:N]
            new[g:N] = np.where(better, seg, new[g:N])
            take[i, g:N] = better
        lo = max(0, N - g)
        j = lo + int(np.argmin(cand[lo:]))
        if cand[j] < new[N]:
            new[N] = cand[j]
            take[i, N] = True
            top_from[i] = j
        best = new
    chosen = np.zeros(n, dtype=bool)
    k = N
    for i in range(n - 1, -1, -1):
        if k == 0:
            break
        if take[i, k]:
            chosen[i] = True
            k = int(top_from[i]) if k == N else k - int(w[i])
    return chosen, True


def greedy_spurs(cost: np.ndarray, gain: np.ndarray, need: float) -> np.ndarray:
    """Spurs by rising cost per household until the gain passes ``need`` (for comparison only)."""
    cost, gain = np.asarray(cost, dtype=float), np.asarray(gain, dtype=float)
    chosen = np.zeros(len(cost), dtype=bool)
    total = 0.0
    for i in np.argsort(cost / np.maximum(gain, 1e-12), kind="mergesort"):
        if total > need:
            break
        chosen[i] = True
        total += gain[i]
    return chosen


# --------------------------------------------------------------------------- the plan
def plan_fibre(villages: gpd.GeoDataFrame, fibre: gpd.GeoDataFrame, *, level: str, study_name: str,
               goal_share: float, drop_distance_m: float, cost_per_m: float, roads: RoadGraph | None = None,
               road_snap_m: float = 100.0) -> FibrePlan:
    """The cheapest way past the fibre goal, for the district and for each unit of ``level``.

    Returns a :class:`FibrePlan`: ``spurs`` (:func:`compute_spurs` plus the village's id,
    name, unit, households and passed households, ``cost_vnd``, ``cost_vnd_per_household``,
    ``in_district_plan`` and ``in_unit_plan``) and ``units`` (per commune and the district:
    households, passed, ``households_needed``, spurs chosen, ``spur_m``, ``cost_vnd``,
    ``households_gained``, ``share_after``, ``reaches_goal``).

    Notes
    -----
    The goal is passed when ``(passed + gained) / households > goal_share``; the least-cost
    set is :func:`least_cost_spurs` over the villages that need a spur. Villages that need
    cable inside the village only (:data:`NEEDS_IN_VILLAGE`) have no spur cost and are not
    chosen. Each spur is costed alone: two spurs that could share a stretch are counted
    twice, so the plan's metres are an upper bound.
    """
    spurs = compute_spurs(villages, fibre, drop_distance_m=drop_distance_m, roads=roads, road_snap_m=road_snap_m)
    vi = spurs["village"].to_numpy(dtype=np.int64)
    v = villages.iloc[vi]
    spurs.insert(1, "village_id", v["village_id"].astype(str).to_numpy())
    spurs.insert(2, "name", v["name"].astype(str).to_numpy())
    spurs.insert(3, "unit", v[level].astype(str).to_numpy())
    spurs.insert(4, "households", v["households"].to_numpy(dtype=float))
    spurs.insert(5, "households_passed", v["households_passed"].to_numpy(dtype=float))
    spurs.insert(6, "fibre_share", v["fibre_share"].to_numpy(dtype=float))
    spurs["cost_vnd"] = np.where(spurs["needs"] == NEEDS_SPUR,
                                 np.round(spurs["spur_length_m"].to_numpy(dtype=float) * cost_per_m), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        spurs["cost_vnd_per_household"] = np.round(spurs["cost_vnd"] / spurs["households_gained"].replace(0, np.nan))
    candidate = (spurs["needs"] == NEEDS_SPUR).to_numpy()
    spurs["in_district_plan"] = False
    spurs["in_unit_plan"] = False

    units_rows = []
    hh_all = villages["households"].to_numpy(dtype=float)
    passed_all = villages["households_passed"].to_numpy(dtype=float)
    unit_of = villages[level].astype(str).to_numpy()
    groups = [("district", study_name, np.ones(len(villages), dtype=bool), np.ones(len(spurs), dtype=bool))]
    groups += [(level, name, unit_of == name, (spurs["unit"] == name).to_numpy()) for name in sorted(set(unit_of))]
    for kind, name, vmask, smask in groups:
        H, P = float(hh_all[vmask].sum()), float(passed_all[vmask].sum())
        need = goal_share * H - P
        pick = np.flatnonzero(smask & candidate)
        chosen, reached = least_cost_spurs(spurs["cost_vnd"].to_numpy(dtype=float)[pick],
                                           spurs["households_gained"].to_numpy(dtype=float)[pick], need)
        sel = pick[chosen]
        column = "in_district_plan" if kind == "district" else "in_unit_plan"
        spurs.loc[spurs.index[sel], column] = True
        gained = float(spurs["households_gained"].to_numpy(dtype=float)[sel].sum())
        units_rows.append({
            "level": kind, "unit": name, "households": H, "households_passed": round(P, 1),
            "fibre_share": P / H if H > 0 else np.nan, "goal_share": goal_share,
            "households_needed": round(max(0.0, need), 1), "spurs": int(len(sel)),
            "spur_m": round(float(spurs["spur_length_m"].to_numpy(dtype=float)[sel].sum()), 1),
            "cost_vnd": float(spurs["cost_vnd"].to_numpy(dtype=float)[sel].sum()),
            "households_gained": round(gained, 1),
            "share_after": (P + gained) / H if H > 0 else np.nan,
            "reaches_goal": bool(need < 0 or reached),
            "solver": SOLVER,
        })
    units = pd.DataFrame(units_rows)
    d = units.iloc[0]
    log.info("fibre plan: %d villages below the goal (%d need a spur); district: %d spurs, %.1f km, %.0f VND, "
             "share %.1f%% → %.1f%%%s", len(spurs), int(candidate.sum()), d["spurs"], d["spur_m"] / 1000,
             d["cost_vnd"], 100 * d["fibre_share"], 100 * d["share_after"],
             "" if d["reaches_goal"] else " (the goal cannot be reached with spurs alone)")
    return FibrePlan(spurs=spurs, units=units)


# --------------------------------------------------------------------------- where to measure next
#: Waypoints of one village closer than this (m) to a waypoint already chosen may be left out (0: every
#: needed cell is a waypoint; on the sample the route is hardly longer and decides more villages).
WAYPOINT_SPACING_M = 0.0
#: Road distances between the waypoints of one village are searched this far (m); farther: via the anchor.
INNER_CUTOFF_M = 5000.0
#: Step (m) at which the planned route is sampled to find the cells it passes.
ROUTE_SAMPLE_M = 10.0


@dataclass
class MeasurementPlan:
    """A drive-test plan: waypoints in visiting order, one route per day, and what it would decide."""

    waypoints: gpd.GeoDataFrame  # day, seq, village_id, name, unit, cell, households_in_cell; Point
    days: gpd.GeoDataFrame  # day, km, waypoints, over_budget; LineString (start → waypoints → start)
    villages: pd.DataFrame  # target villages: households, evidence now and after, would_decide, waypoints
    units: pd.DataFrame  # per commune: evidence share of households now and after the drive
    summary: dict  # days, km, waypoints, villages and households targeted / decided, solver


class _Distances:
    """Shortest road distances on a graph with ``length_m`` edges, searched only as far as the targets need.

    Dijkstra's algorithm (as ``networkx.single_source_dijkstra_path_length``) on adjacency
    lists, stopping once every target is settled or the next node lies beyond ``cutoff``:
    the distances to the targets are exactly the shortest ones (a node is settled at its
    shortest distance), and nodes found on the way are kept too. An order of magnitude
    faster than networkx's search over the whole graph for the many near waypoints.
    """

    def __init__(self, graph) -> None:
        self._adj = {n: [(m, float(d["length_m"])) for m, d in nbrs.items()] for n, nbrs in graph.adjacency()}

    def from_node(self, source: int, targets: set[int], *, cutoff: float | None = None) -> dict[int, float]:
        """Distances from ``source``: every target within ``cutoff`` (all of them without one), and more."""
        adj = self._adj
        settled: dict[int, float] = {}
        seen = {source: 0.0}
        heap = [(0.0, source)]
        left = set(targets) & set(adj)
        limit = math.inf if cutoff is None else cutoff
        while heap and left:
            d, n = heapq.heappop(heap)
            if n in settled:
                continue
            settled[n] = d
            left.discard(n)
            for m, w in adj[n]:
                nd = d + w
                if nd <= limit and (m not in seen or nd < seen[m]):
                    seen[m] = nd
                    heapq.heappush(heap, (nd, m))
        return settled


def _tour(dist: dict[int, dict[int, float]], nodes: list[int], first: int) -> list[int]:
    """A closed visiting order of ``nodes`` starting at ``first`` (Christofides on the road metric)."""
    from networkx.algorithms.approximation import christofides
    import networkx as nx

    if len(nodes) <= 3:
        rest = [n for n in nodes if n != first]
        return [first, *rest]
    complete = nx.Graph()
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            complete.add_edge(a, b, weight=min(dist[a].get(b, math.inf), dist[b].get(a, math.inf)))
    cycle = christofides(complete, weight="weight")[:-1]
    k = cycle.index(first)
    return cycle[k:] + cycle[:k]


def plan_measurements(villages: gpd.GeoDataFrame, pieces: gpd.GeoDataFrame, classes: np.ndarray, grid, roads: RoadGraph,
                      *, start_xy: tuple[float, float], level: str, km_per_day: float, village_min_share: float,
                      area_min_share: float, spacing_m: float = WAYPOINT_SPACING_M) -> MeasurementPlan:
    """Where to drive next: a route over the roads through the unmeasured cells that would decide villages.

    Parameters
    ----------
    villages
        Villages with ``households``, ``evidence_share``, ``verdict_4g`` and the ``level`` column.
    pieces
        Village ∩ cell pieces with ``weight_share`` (:func:`covgap.villages.village_pieces`).
    classes
        The any-operator class raster (``CellClass``; insufficient evidence = unmeasured).
    grid, roads
        The analysis grid and the road graph (:func:`covgap.roads.build_road_graph`).
    start_xy
        Start and end of every day (working CRS); the drive starts at the nearest road point.
    km_per_day
        Driving budget of one day.
    village_min_share, area_min_share
        Evidence a village needs for a 4G verdict, and a commune for "no dead zones".

    Notes
    -----
    * **Targets**: villages whose 4G verdict is *insufficient evidence*. Their unmeasured cells
      that a road crosses (a road node lies in them, on the road network connected to the
      start) are ranked by the households living in them (``households × weight_share``); a
      village's *needed* cells are the first ones that bring its evidence to
      ``village_min_share`` (all of them when they cannot). A village no road cell can
      decide is listed with no waypoint.
    * **Waypoints**: the road node nearest the centre of each needed cell (optionally thinned
      to one per ``spacing_m`` within a village).
    * **Order**: Christofides' algorithm (``networkx``; at most 1.5 times the shortest closed
      tour on a metric) on the shortest-road-path distances, first over the villages (one
      anchor each: its most populated needed cell) from the start, then over each village's
      own waypoints from its anchor. Road distances come from Dijkstra on the road graph with
      its plain chains folded (:func:`covgap.roads.contract`): from the start and every anchor
      to everywhere, between a village's waypoints up to 5 km (farther: via the anchor).
    * **Days**: the visiting order is cut into days; a day starts and ends at the start and
      takes the next waypoint while going there and back stays within ``km_per_day``.
    * **Effect**: the cells the planned routes pass (sampled every 10 m) count as measured
      (assuming the drive test records enough samples in every cell it passes); a target
      village *would get a verdict* when its evidence then reaches ``village_min_share``.
    """
    import networkx as nx

    from covgap.cellstats import CellClass
    from covgap.roads import contract, unfold

    g = roads.graph
    xy = roads.xy
    start = int(np.argmin(np.hypot(xy[:, 0] - start_xy[0], xy[:, 1] - start_xy[1])))
    component = nx.node_connected_component(g, start)
    comp = np.zeros(len(xy), dtype=bool)
    comp[list(component)] = True
    node_cell = grid.cell_of(xy[:, 0], xy[:, 1])
    cx, cy = grid.cell_centres(np.maximum(node_cell, 0))
    near = np.hypot(xy[:, 0] - cx, xy[:, 1] - cy)
    order = np.lexsort((near, node_cell))
    cell_node: dict[int, int] = {}
    for n in order:
        c = int(node_cell[n])
        if c >= 0 and comp[n] and c not in cell_node:
            cell_node[c] = int(n)

    cls = np.asarray(classes).ravel()
    hh = villages["households"].to_numpy(dtype=float)
    evidence = np.nan_to_num(villages["evidence_share"].to_numpy(dtype=float))
    target = (villages["verdict_4g"] == "insufficient evidence").to_numpy()
    pv, pc, pw = (pieces["village"].to_numpy(), pieces["cell"].to_numpy(), pieces["weight_share"].to_numpy(dtype=float))
    unmeasured = cls[pc] == int(CellClass.INSUFFICIENT)
    wp_rows = []
    by_village: dict[int, list[int]] = {}
    for vi in np.flatnonzero(target):
        sel = np.flatnonzero((pv == vi) & unmeasured)
        sel = sel[[int(pc[k]) in cell_node for k in sel]]
        sel = sel[np.argsort(-pw[sel], kind="mergesort")]
        cum = evidence[vi] + np.cumsum(pw[sel])
        enough = np.flatnonzero(cum >= village_min_share - 1e-9)
        sel = sel[:enough[0] + 1] if len(enough) else sel
        kept: list[int] = []
        for k in sel:
            n = cell_node[int(pc[k])]
            if n in kept or any(np.hypot(*(xy[n] - xy[m])) < spacing_m for m in kept):
                continue
            kept.append(n)
            wp_rows.append({"village": int(vi), "cell": int(pc[k]), "node": n, "households_in_cell": round(hh[vi] * pw[k], 1)})
        if kept:
            by_village[int(vi)] = kept

    keep = {start} | {r["node"] for r in wp_rows}
    core = contract(roads, keep)
    anchor_nodes = {by_village[v][0] for v in by_village}
    # Road distances: from the start and each anchor to the start, every anchor and the anchor's own
    # waypoints (all of them from the start); from the other waypoints to their village's waypoints, near
    # ones only (within INNER_CUTOFF_M). A node in two villages searches for the targets of both.
    targets: dict[int, set[int]] = {int(start): {int(n) for n in keep}}
    far = {int(start)} | {int(a) for a in anchor_nodes}
    for nodes in by_village.values():
        for i, node in enumerate(nodes):
            targets.setdefault(int(node), set()).update(int(n) for n in nodes)
            if i == 0:
                targets[int(node)].update(far)
    search = _Distances(core)
    dist: dict[int, dict[int, float]] = {
        node: search.from_node(node, wanted, cutoff=None if node in far else INNER_CUTOFF_M)
        for node, wanted in targets.items()}
    for nodes in by_village.values():  # a pair farther apart than the cutoff: via the anchor (an upper bound)
        a = int(nodes[0])
        for m in nodes[1:]:
            for n in nodes[1:]:
                dist[m].setdefault(n, dist[a][m] + dist[a][n])
    legs: dict[tuple[int, int], tuple[float, list[int]]] = {}

    def leg(a: int, b: int) -> tuple[float, list[int]]:
        if (a, b) not in legs:
            legs[(a, b)] = nx.bidirectional_dijkstra(core, a, b, weight="length_m")
        return legs[(a, b)]

    anchors = {by_village[v][0]: v for v in by_village}
    sequence: list[int] = []
    if anchors:
        village_order = _tour(dist, list(dict.fromkeys([start, *anchors])), start)[1:]
        for a in village_order:
            inner = _tour(dist, by_village[anchors[a]], a) if a in anchors else []
            sequence.extend(inner)

    sequence = list(dict.fromkeys(n for n in sequence if n != start))  # a cell shared by two villages: once
    budget = km_per_day * 1000.0
    days: list[list[int]] = []
    used, pos = 0.0, start
    for n in sequence:  # each day: start → its waypoints → start, within the budget
        if days and used + leg(pos, n)[0] + dist[start][n] <= budget:
            days[-1].append(n)
            used += leg(pos, n)[0]
        else:
            days.append([n])
            used = dist[start][n]
        pos = n

    seq_of = {}
    day_rows, day_geoms = [], []
    passed_cells: set[int] = set()
    for d, stops in enumerate(days, start=1):
        nodes = [start]
        total = 0.0
        for a, b in zip([start, *stops], [*stops, start]):
            length, core_path = leg(a, b)
            nodes.extend(unfold(core, core_path)[1:])
            total += length
        for i, n in enumerate(stops, start=1):
            seq_of[n] = (d, i)
        line = shapely.LineString(xy[nodes]) if len(nodes) > 1 else None
        if line is not None:
            dense = shapely.get_coordinates(shapely.segmentize(line, ROUTE_SAMPLE_M))
            cells = grid.cell_of(dense[:, 0], dense[:, 1])
            passed_cells.update(int(c) for c in cells[cells >= 0])
        day_rows.append({"day": d, "km": round(total / 1000, 2), "waypoints": len(stops),
                         "over_budget": bool(total > budget + 1e-6)})
        day_geoms.append(line)

    wp = pd.DataFrame(wp_rows, columns=["village", "cell", "node", "households_in_cell"])
    wp = wp[wp["node"].isin(seq_of)].copy()
    wp["day"] = [seq_of[n][0] for n in wp["node"]]
    wp["seq"] = [seq_of[n][1] for n in wp["node"]]
    wp = wp.sort_values(["day", "seq"], kind="mergesort").reset_index(drop=True)
    v_of = villages.iloc[wp["village"].to_numpy(dtype=np.int64)]
    waypoints = gpd.GeoDataFrame({
        "day": wp["day"].to_numpy(dtype=np.int64), "seq": wp["seq"].to_numpy(dtype=np.int64),
        "village_id": v_of["village_id"].astype(str).to_numpy(), "name": v_of["name"].astype(str).to_numpy(),
        "unit": v_of[level].astype(str).to_numpy(), "cell": wp["cell"].to_numpy(dtype=np.int64),
        "households_in_cell": wp["households_in_cell"].to_numpy(dtype=float),
    }, geometry=shapely.points(xy[wp["node"].to_numpy(dtype=np.int64)]) if len(wp) else [], crs=villages.crs)
    day_frame = gpd.GeoDataFrame(pd.DataFrame(day_rows, columns=["day", "km", "waypoints", "over_budget"]),
                                 geometry=day_geoms, crs=villages.crs)

    passed = np.zeros(len(cls), dtype=bool)
    if passed_cells:
        passed[np.fromiter(passed_cells, dtype=np.int64)] = True
    measured_after = (~unmeasured) | passed[pc]
    after = np.minimum(np.bincount(pv, weights=np.where(measured_after, pw, 0.0), minlength=len(villages)), 1.0)
    decide = target & (after >= village_min_share - 1e-9)
    n_wp = np.bincount(wp["village"].to_numpy(dtype=np.int64), minlength=len(villages))
    vt = np.flatnonzero(target)
    vframe = pd.DataFrame({
        "village_id": villages["village_id"].astype(str).to_numpy()[vt], "name": villages["name"].astype(str).to_numpy()[vt],
        "unit": villages[level].astype(str).to_numpy()[vt], "households": hh[vt],
        "evidence_share": evidence[vt], "evidence_share_after": after[vt], "waypoints": n_wp[vt],
        "would_decide": decide[vt],
    })
    unit = villages[level].astype(str).to_numpy()
    urows = []
    for name in sorted(set(unit)):
        m = unit == name
        H = hh[m].sum()
        now, then = (float((hh[m] * e[m]).sum() / H) if H > 0 else np.nan for e in (evidence, after))
        urows.append({"unit": name, "households": H, "evidence_share": now, "evidence_share_after": then,
                      "no_dead_zones_decidable_after": bool(now < area_min_share <= then + 1e-12)})
    summary = {
        "days": len(days), "km": round(sum(r["km"] for r in day_rows), 2), "waypoints": int(len(waypoints)),
        "km_per_day": km_per_day, "start": [round(float(xy[start][0]), 2), round(float(xy[start][1]), 2)],
        "villages_targeted": int(target.sum()), "households_targeted": float(hh[target].sum()),
        "villages_with_waypoints": int(len(by_village)),
        "villages_decided": int(decide.sum()), "households_decided": round(float(hh[decide].sum()), 1),
        "cells_passed": int(passed.sum()),
        "solver": "Christofides (networkx) on shortest road paths: villages from the start, then each village's waypoints",
    }
    log.info("measurement plan: %d villages without a verdict (%d households); %d waypoints in %d days, %.1f km; "
             "%d villages (%.0f households) would get a verdict", summary["villages_targeted"],
             summary["households_targeted"], summary["waypoints"], summary["days"], summary["km"],
             summary["villages_decided"], summary["households_decided"])
    return MeasurementPlan(waypoints=waypoints, days=day_frame, villages=vframe, units=pd.DataFrame(urows), summary=summary)
