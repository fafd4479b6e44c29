"""Coordinates, the 50 m simulation grid, WorldPop and the settlement density, geometry helpers."""

from __future__ import annotations

import unicodedata

import numpy as np
import rasterio
import shapely
from rasterio import features, warp
from rasterio.fill import fillnodata
from rasterio.transform import from_origin
from shapely.geometry import MultiPoint

from covgap.grid import make_grid
from samplegen.settings import SETTLED_WEIGHTS, SETTLED_WITHIN_M, SETTLEMENT_RES, SOURCE, TO_LL, TO_UTM, UTM, WORLDPOP_PIXEL_KM2


def nfc(text: str) -> str:
    """Return ``text`` in Unicode NFC (Vietnamese diacritics precomposed)."""
    return unicodedata.normalize("NFC", text)


def lonlat_to_xy(lon, lat):
    """Project WGS84 lon/lat (scalars or arrays) to the working CRS."""
    return TO_UTM.transform(lon, lat)


def xy_to_lonlat(x, y):
    """Project working-CRS coordinates back to WGS84 lon/lat."""
    return TO_LL.transform(x, y)


def polygons_only(geom):
    """Return the Polygon parts of any geometry as a list (drops lines, points, empties)."""
    if geom is None or geom.is_empty:
        return []
    if geom.geom_type == "Polygon":
        return [geom]
    return [g for g in shapely.get_parts(geom) if g.geom_type == "Polygon" and g.area > 0]


def as_areal(parts):
    """Union polygon parts into one valid Polygon or MultiPolygon."""
    geom = shapely.make_valid(shapely.union_all(parts))
    parts = polygons_only(geom)
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


class Grid:
    """covgap's analysis grid (:class:`covgap.grid.Grid`, the same geometry and snapping) over the
    district plus a buffer, with what the simulation needs besides: cell-centre coordinates
    (``X``, ``Y``), rasterising and bilinear sampling of fields."""

    def __init__(self, bounds, res, buffer):
        minx, miny, maxx, maxy = bounds
        self.cells = make_grid((minx - buffer, miny - buffer, maxx + buffer, maxy + buffer), size=res, crs=UTM)
        self.res = self.cells.size
        self.x0, self.y1 = self.cells.x0, self.cells.y0
        self.nx, self.ny = self.cells.ncols, self.cells.nrows
        self.transform = self.cells.transform
        xs = self.x0 + (np.arange(self.nx) + 0.5) * res
        ys = self.y1 - (np.arange(self.ny) + 0.5) * res
        self.X, self.Y = np.meshgrid(xs, ys)

    @property
    def shape(self):
        return (self.ny, self.nx)

    def rasterize(self, geoms, values=None, all_touched=False):
        """Burn geometries (value = index + 1 unless given) into an int32 array of this grid."""
        values = values if values is not None else range(1, len(geoms) + 1)
        shapes = [(g, int(v)) for g, v in zip(geoms, values)]
        return features.rasterize(shapes, out_shape=self.shape, transform=self.transform,
                                  fill=0, dtype="int32", all_touched=all_touched)

    def bilinear(self, field, x, y):
        """Bilinear interpolation of a cell-centred field at points x, y (arrays, metres)."""
        c = (np.asarray(x) - self.x0) / self.res - 0.5
        r = (self.y1 - np.asarray(y)) / self.res - 0.5
        c = np.clip(c, 0, self.nx - 1.001)
        r = np.clip(r, 0, self.ny - 1.001)
        c0, r0 = np.floor(c).astype(int), np.floor(r).astype(int)
        fc, fr = c - c0, r - r0
        return (field[r0, c0] * (1 - fc) * (1 - fr) + field[r0, c0 + 1] * fc * (1 - fr)
                + field[r0 + 1, c0] * (1 - fc) * fr + field[r0 + 1, c0 + 1] * fc * fr)

    def cell_of(self, x, y):
        """Row and column index of the cells containing points x, y."""
        c = np.clip(((np.asarray(x) - self.x0) // self.res).astype(int), 0, self.nx - 1)
        r = np.clip(((self.y1 - np.asarray(y)) // self.res).astype(int), 0, self.ny - 1)
        return r, c


def worldpop_density(grid):
    """WorldPop 2020 people/km² resampled (bilinear) to the grid; sea NoData filled by nearest."""
    with rasterio.open(SOURCE / "worldpop_2020_1km_tu_nghia.tif") as src:
        a = src.read(1).astype("float64")
        valid = (a != src.nodata) & (a >= 0)
        a = fillnodata(np.where(valid, a, 0.0), mask=valid.astype("uint8"), max_search_distance=20)
        out = np.zeros(grid.shape, dtype="float64")
        warp.reproject(a, out, src_transform=src.transform, src_crs=src.crs,
                       dst_transform=grid.transform, dst_crs=UTM,
                       resampling=warp.Resampling.bilinear)
    return np.maximum(out, 0.0) / WORLDPOP_PIXEL_KM2


def gaussian_filter(a, sigma_cells):
    """Gaussian smoothing through the FFT (reflect-padded), sigma in cells."""
    pad = int(4 * sigma_cells) + 1
    ap = np.pad(a, pad, mode="reflect")
    ky = np.fft.fftfreq(ap.shape[0])[:, None]
    kx = np.fft.rfftfreq(ap.shape[1])[None, :]
    kernel = np.exp(-2.0 * (np.pi * sigma_cells) ** 2 * (ky ** 2 + kx ** 2))
    out = np.fft.irfft2(np.fft.rfft2(ap) * kernel, s=ap.shape)
    return out[pad:-pad, pad:-pad]


def random_points_in(geom, n, rng):
    """n uniformly distributed points inside a polygon (rejection sampling), as an (n, 2) array."""
    minx, miny, maxx, maxy = geom.bounds
    pts = np.empty((0, 2))
    while len(pts) < n:
        cand = rng.uniform([minx, miny], [maxx, maxy], size=(2 * n, 2))
        cand = cand[shapely.contains_xy(geom, cand[:, 0], cand[:, 1])]
        pts = np.vstack([pts, cand])
    return pts[:n]


def voronoi_pieces(seeds, container):
    """Voronoi cells of the seeds (input order) clipped to the container polygon."""
    cells = shapely.voronoi_polygons(MultiPoint(seeds), extend_to=container.buffer(2000),
                                     ordered=True)
    return [c.intersection(container) for c in shapely.get_parts(cells)]


def settlement_density(grid, graph, density, district):
    """People/km² on a SETTLEMENT_RES grid: WorldPop redistributed toward roads and lanes
    (SETTLED_WEIGHTS by distance), the district total unchanged; returns (array, transform,
    the same on the simulation grid)."""
    lines = shapely.union_all([e["geom"] for e in graph.edges])
    near = grid.rasterize([lines.buffer(SETTLED_WITHIN_M[0])]) > 0
    mid = grid.rasterize([lines.buffer(SETTLED_WITHIN_M[1])]) > 0
    w = np.where(near, SETTLED_WEIGHTS[0], np.where(mid, SETTLED_WEIGHTS[1], SETTLED_WEIGHTS[2]))
    inside = grid.rasterize([district]) > 0
    weighted = density * w
    total = float((density * inside).sum())
    settled = weighted * (total / max(float((weighted * inside).sum()), 1e-9))
    k = int(SETTLEMENT_RES // grid.res)
    ny, nx = (grid.ny // k) * k, (grid.nx // k) * k
    coarse = settled[:ny, :nx].reshape(ny // k, k, nx // k, k).mean(axis=(1, 3))
    return coarse.astype("float32"), from_origin(grid.x0, grid.y1, SETTLEMENT_RES, SETTLEMENT_RES), settled
