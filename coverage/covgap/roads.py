"""The road network as a graph, for the plans (fibre spurs along roads, the measurement drive).

Pure functions: line geometries in, a :class:`RoadGraph` out; nothing is read or written.

networkx is imported where a graph is built (0.1 s): a run without a road layer never needs it,
and with one the graph is built by the analysis's layer side, in its own process (covgap.pipeline).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import shapely

if TYPE_CHECKING:
    import networkx as nx

log = logging.getLogger(__name__)

#: Longest straight piece between two graph nodes (m): long OpenStreetMap segments are cut so that
#: a node lies in (nearly) every grid cell a road crosses and a spur can leave the road anywhere.
MAX_EDGE_M = 50.0


@dataclass(frozen=True)
class RoadGraph:
    """An undirected graph of road pieces: node ``i`` lies at ``xy[i]`` (working CRS); edge weight ``length_m``."""

    graph: nx.Graph
    xy: np.ndarray  # (n, 2) float


def build_road_graph(lines, *, max_edge_m: float = MAX_EDGE_M) -> RoadGraph:
    """A road graph from line geometries: nodes at every vertex and crossing, edges along the lines.

    Parameters
    ----------
    lines
        LineStrings / MultiLineStrings in a metric CRS (array-like of shapely geometries).
    max_edge_m
        Lines are cut into pieces no longer than this (``shapely.segmentize``).

    Returns
    -------
    RoadGraph whose edges carry ``length_m``; two lines that cross or touch share a node
    there (the lines are noded first), so the graph connects wherever the roads do.

    Notes
    -----
    Vertices are matched after rounding to 1 cm, so lines that meet end to end join.
    """
    import networkx as nx

    geoms = [g for g in np.asarray(lines, dtype=object) if g is not None and not g.is_empty]
    if not geoms:
        return RoadGraph(graph=nx.Graph(), xy=np.zeros((0, 2)))
    noded = shapely.node(shapely.MultiLineString([p for g in geoms for p in shapely.get_parts(g)]))
    noded = shapely.segmentize(noded, max_edge_m)
    index: dict[tuple[float, float], int] = {}
    coords: list[tuple[float, float]] = []
    graph = nx.Graph()
    for part in shapely.get_parts(noded):
        pts = np.round(shapely.get_coordinates(part), 2)
        ids = []
        for x, y in pts:
            key = (float(x), float(y))
            node = index.get(key)
            if node is None:
                node = index[key] = len(coords)
                coords.append(key)
            ids.append(node)
        for a, b in zip(ids[:-1], ids[1:]):
            if a == b:
                continue
            length = float(np.hypot(coords[a][0] - coords[b][0], coords[a][1] - coords[b][1]))
            if not graph.has_edge(a, b) or graph[a][b]["length_m"] > length:
                graph.add_edge(a, b, length_m=length)
    xy = np.asarray(coords, dtype=float)
    log.debug("road graph: %d nodes, %d edges, %.1f km", graph.number_of_nodes(), graph.number_of_edges(),
              graph.size(weight="length_m") / 1000)
    return RoadGraph(graph=graph, xy=xy)


def path_line(rg: RoadGraph, nodes: list[int]) -> shapely.LineString | None:
    """The line through the given nodes (None for fewer than two)."""
    if len(nodes) < 2:
        return None
    return shapely.LineString(rg.xy[np.asarray(nodes)])


def contract(rg: RoadGraph, keep: set[int]) -> nx.Graph:
    """The road graph with its chains of plain road points folded into single edges.

    Nodes kept: every junction or dead end (degree ≠ 2) and the nodes in ``keep``. Each edge
    carries ``length_m`` and ``nodes`` (the road nodes from one end to the other, in the
    order from the smaller node number to the larger), so a route on the folded graph
    unfolds back onto the roads with :func:`unfold`. Shortest paths between kept nodes are
    the same on both graphs; the folded one is an order of magnitude smaller.
    """
    import networkx as nx

    g = rg.graph
    core = {n for n in g.nodes if g.degree(n) != 2} | {n for n in keep if n in g}
    out = nx.Graph()
    out.add_nodes_from(core)
    for start in core:
        for nb in g.neighbors(start):
            chain, prev, cur = [start], start, nb
            length = g[start][nb]["length_m"]
            while cur not in core:
                chain.append(cur)
                a, b = (m for m in g.neighbors(cur))  # a plain road point has two neighbours
                nxt = b if a == prev else a
                length += g[cur][nxt]["length_m"]
                prev, cur = cur, nxt
            chain.append(cur)
            if cur == start and len(chain) <= 2:
                continue
            lo, hi = (start, cur) if start <= cur else (cur, start)
            if lo == hi:
                continue  # a loop back to the same node adds nothing to a shortest path
            if not out.has_edge(lo, hi) or out[lo][hi]["length_m"] > length:
                out.add_edge(lo, hi, length_m=length, nodes=chain if start == lo else chain[::-1])
    return out


def unfold(core: nx.Graph, path: list[int]) -> list[int]:
    """The road nodes of a path on the folded graph (:func:`contract`)."""
    nodes: list[int] = path[:1]
    for a, b in zip(path[:-1], path[1:]):
        chain = core[a][b]["nodes"]
        chain = chain if chain[0] == a else chain[::-1]
        nodes.extend(chain[1:])
    return nodes
