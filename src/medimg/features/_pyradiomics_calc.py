"""PyRadiomics's feature classes, computed the way PyRadiomics computes them (vectorised NumPy).

Each function takes the image cropped to the ROI's bounding box (array order z, y, x), the ROI as a
boolean array of the same shape and PyRadiomics's settings, and returns ``{feature name: value}`` with
PyRadiomics's own feature names. The matrices follow PyRadiomics's C extension (``_cmatrices``,
``_cshape``) and the feature formulas its Python classes, including its departures from the IBSI
(see ``docs/pyradiomics.md``): grey levels binned from the ROI minimum, matrices over the grey levels
present only, per-angle GLCM/GLRLM averaged, voxels without neighbours counted by the NGTDM, the
dependence count including the centre voxel, the mesh with its own marching-cubes table and
diameters between mesh vertices.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["angles", "discretise", "firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm",
           "FEATURE_NAMES", "DEPRECATED", "CLASSES"]

_EPS = np.spacing(1)

#: Every feature of each class PyRadiomics enables by default, in its (alphabetical) order.
FEATURE_NAMES: dict[str, tuple[str, ...]] = {
    "firstorder": ("10Percentile", "90Percentile", "Energy", "Entropy", "InterquartileRange", "Kurtosis", "Maximum",
                   "Mean", "MeanAbsoluteDeviation", "Median", "Minimum", "Range", "RobustMeanAbsoluteDeviation",
                   "RootMeanSquared", "Skewness", "TotalEnergy", "Uniformity", "Variance"),
    "shape": ("Elongation", "Flatness", "LeastAxisLength", "MajorAxisLength", "Maximum2DDiameterColumn",
              "Maximum2DDiameterRow", "Maximum2DDiameterSlice", "Maximum3DDiameter", "MeshVolume", "MinorAxisLength",
              "Sphericity", "SurfaceArea", "SurfaceVolumeRatio", "VoxelVolume"),
    "glcm": ("Autocorrelation", "ClusterProminence", "ClusterShade", "ClusterTendency", "Contrast", "Correlation",
             "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance", "Id", "Idm", "Idmn", "Idn", "Imc1",
             "Imc2", "InverseVariance", "JointAverage", "JointEnergy", "JointEntropy", "MCC", "MaximumProbability",
             "SumAverage", "SumEntropy", "SumSquares"),
    "glrlm": ("GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
              "HighGrayLevelRunEmphasis", "LongRunEmphasis", "LongRunHighGrayLevelEmphasis",
              "LongRunLowGrayLevelEmphasis", "LowGrayLevelRunEmphasis", "RunEntropy", "RunLengthNonUniformity",
              "RunLengthNonUniformityNormalized", "RunPercentage", "RunVariance", "ShortRunEmphasis",
              "ShortRunHighGrayLevelEmphasis", "ShortRunLowGrayLevelEmphasis"),
    "glszm": ("GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
              "HighGrayLevelZoneEmphasis", "LargeAreaEmphasis", "LargeAreaHighGrayLevelEmphasis",
              "LargeAreaLowGrayLevelEmphasis", "LowGrayLevelZoneEmphasis", "SizeZoneNonUniformity",
              "SizeZoneNonUniformityNormalized", "SmallAreaEmphasis", "SmallAreaHighGrayLevelEmphasis",
              "SmallAreaLowGrayLevelEmphasis", "ZoneEntropy", "ZonePercentage", "ZoneVariance"),
    "gldm": ("DependenceEntropy", "DependenceNonUniformity", "DependenceNonUniformityNormalized",
             "DependenceVariance", "GrayLevelNonUniformity", "GrayLevelVariance", "HighGrayLevelEmphasis",
             "LargeDependenceEmphasis", "LargeDependenceHighGrayLevelEmphasis", "LargeDependenceLowGrayLevelEmphasis",
             "LowGrayLevelEmphasis", "SmallDependenceEmphasis", "SmallDependenceHighGrayLevelEmphasis",
             "SmallDependenceLowGrayLevelEmphasis"),
    "ngtdm": ("Busyness", "Coarseness", "Complexity", "Contrast", "Strength"),
}
#: Deprecated features PyRadiomics still computes when a parameter file names them.
DEPRECATED: dict[str, tuple[str, ...]] = {
    "firstorder": ("StandardDeviation",),
    "shape": ("Compactness1", "Compactness2", "SphericalDisproportion"),
}
#: The feature classes, in PyRadiomics's order.
CLASSES = tuple(FEATURE_NAMES)


# ---------------------------------------------------------------------------------------------- helpers

def angles(shape: tuple[int, ...], distances: Iterable[int] = (1,), *, force2d: bool = False,
           force2d_dim: int = 0, bidirectional: bool = False) -> np.ndarray:
    """Neighbour offsets (z, y, x) as PyRadiomics generates them: every offset whose largest
    component is one of ``distances``, in the dimensions longer than one voxel (not ``force2d_dim``
    with ``force2d``); one of each opposite pair unless ``bidirectional``. Shape (Na, 3)."""
    moving = [n > 1 for n in shape]
    if force2d:
        moving[force2d_dim] = False
    out: list[tuple[int, ...]] = []
    for d in sorted({int(v) for v in distances}, reverse=False):
        rng = [range(d, -d - 1, -1) if m else range(0, 1) for m in moving]
        for off in itertools.product(*rng):
            if max(abs(v) for v in off) != d:
                continue
            if not bidirectional:
                first = next(v for v in off if v != 0)
                if first < 0:
                    continue
            out.append(off)
    return np.asarray(out, dtype=np.intp).reshape(-1, 3)


def bin_edges(values: np.ndarray, *, bin_width: float = 25, bin_count: int | None = None) -> np.ndarray:
    """PyRadiomics's bin edges: fixed width from ``min - (min mod width)``, or ``bin_count`` equal
    bins over [min, max] (numpy.histogram) with the last edge raised by 1."""
    if bin_count is not None:
        edges = np.histogram(values, bin_count)[1]
        edges[-1] += 1
        return edges
    minimum = values.min()
    maximum = values.max()
    low = minimum - (minimum % bin_width)
    high = maximum + 2 * bin_width
    edges = np.arange(low, high, bin_width)
    if len(edges) == 1:
        edges = np.asarray([edges[0] - 0.5, edges[0] + 0.5])
    return edges


def discretise(image: np.ndarray, roi: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    """Grey levels 1..Ng inside ``roi`` (0 outside), binned as PyRadiomics bins (module notes)."""
    values = image[roi]
    edges = bin_edges(values, bin_width=settings.get("binWidth", 25), bin_count=settings.get("binCount"))
    out = np.zeros(image.shape, dtype=np.intp)
    out[roi] = np.digitize(values, edges)
    return out


class _Grid:
    """The discretised ROI padded with zeros, and the flat indices of its voxels (for neighbours)."""

    def __init__(self, q: np.ndarray, pad: int) -> None:
        self.shape = q.shape
        self.pad = pad
        self.padded = np.pad(q, pad)
        self.flat = self.padded.ravel()
        self.strides = np.asarray([self.padded.shape[1] * self.padded.shape[2], self.padded.shape[2], 1])
        coords = np.nonzero(q)
        self.coords = np.stack(coords, axis=1)
        self.index = np.ravel_multi_index(tuple(c + pad for c in coords), self.padded.shape)
        self.values = self.flat[self.index]

    def neighbours(self, offsets: np.ndarray) -> np.ndarray:
        """Grey level of each voxel's neighbour at each offset (0: outside), shape (N, Na)."""
        return self.flat[self.index[:, None] + (offsets @ self.strides)[None, :]]


def _present(q: np.ndarray) -> tuple[np.ndarray, int]:
    levels = np.unique(q[q > 0])
    return levels, int(levels.max())


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values))


# ------------------------------------------------------------------------------------------ first order

def firstorder(image: np.ndarray, roi: np.ndarray, spacing: tuple[float, float, float],
               settings: Mapping[str, Any], names: Iterable[str]) -> dict[str, float]:
    """PyRadiomics first-order features of the voxels of ``roi`` (``spacing`` (z, y, x) mm)."""
    x = image[roi].astype(float)
    shift = settings.get("voxelArrayShift", 0)
    q = discretise(image, roi, settings)
    _, counts = np.unique(q[roi], return_counts=True)
    p = counts / counts.sum()
    n = x.size
    mean = x.mean()
    dev = x - mean
    m2 = np.mean(dev ** 2)
    out: dict[str, float] = {}
    p10, p25, p75, p90 = np.percentile(x, [10, 25, 75, 90])
    energy = float(np.sum((x + shift) ** 2))
    for name in names:
        if name == "10Percentile":
            v = p10
        elif name == "90Percentile":
            v = p90
        elif name == "Energy":
            v = energy
        elif name == "TotalEnergy":
            v = energy * float(np.prod(spacing))
        elif name == "Entropy":
            v = -np.sum(p * np.log2(p + _EPS))
        elif name == "InterquartileRange":
            v = p75 - p25
        elif name == "Kurtosis":
            v = np.mean(dev ** 4) / m2 ** 2 if m2 != 0 else 0.0
        elif name == "Skewness":
            v = np.mean(dev ** 3) / m2 ** 1.5 if m2 != 0 else 0.0
        elif name == "Maximum":
            v = x.max()
        elif name == "Minimum":
            v = x.min()
        elif name == "Mean":
            v = mean
        elif name == "MeanAbsoluteDeviation":
            v = np.mean(np.abs(dev))
        elif name == "Median":
            v = np.median(x)
        elif name == "Range":
            v = x.max() - x.min()
        elif name == "RobustMeanAbsoluteDeviation":
            sub = x[(x >= p10) & (x <= p90)]
            v = np.mean(np.abs(sub - sub.mean()))
        elif name == "RootMeanSquared":
            v = np.sqrt(energy / n) if n else 0.0
        elif name == "StandardDeviation":
            v = np.sqrt(m2)
        elif name == "Uniformity":
            v = np.sum(p ** 2)
        elif name == "Variance":
            v = np.std(x) ** 2
        else:  # pragma: no cover - names are checked by the caller
            raise KeyError(name)
        out[name] = float(v)
    return out


# ------------------------------------------------------------------------------------------------ shape

def _mesh(mask: np.ndarray, spacing: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Surface area (mm^2), signed volume (mm^3) and the vertices (twice their voxel coordinates,
    integers, unique) of PyRadiomics's mesh of the padded ``mask``."""
    from medimg.features._pyradiomics_tables import CORNERS, TRIANGLES

    tri_vertices, _ = _triangle_arrays()
    m = mask.astype(np.uint8)
    s0, s1, s2 = (n - 1 for n in m.shape)
    config = np.zeros((s0, s1, s2), dtype=np.int32)
    for bit, (dz, dy, dx) in enumerate(CORNERS):
        config |= m[dz:dz + s0, dy:dy + s1, dx:dx + s2].astype(np.int32) << bit
    sign = np.where(config & 0x80, -1.0, 1.0)
    config = np.where(config & 0x80, config ^ 0xFF, config)
    cubes = np.nonzero((config > 0) & (config < 128))
    cfg = config[cubes]
    origin = np.stack(cubes, axis=1).astype(float)  # (Nc, 3)
    sgn = sign[cubes]
    # Expand every cube into its triangles.
    counts = np.asarray([len(t) // 3 for t in TRIANGLES])[cfg]
    cube_of_tri = np.repeat(np.arange(cfg.size), counts)
    first = np.concatenate(([0], np.cumsum(np.asarray([len(t) // 3 for t in TRIANGLES]))))
    local = np.arange(cube_of_tri.size) - np.repeat(np.cumsum(counts) - counts, counts)
    tri = first[cfg[cube_of_tri]] + local
    vox = origin[cube_of_tri][:, None, :] + tri_vertices[tri]  # (Nt, 3, 3) voxel units
    verts = vox * spacing
    a, b, c = verts[:, 0], verts[:, 1], verts[:, 2]
    volume = float(np.sum(sgn[cube_of_tri] * np.einsum("ij,ij->i", np.cross(a, b), c))) / 6.0
    area = float(np.sum(0.5 * np.linalg.norm(np.cross(a - c, b - c), axis=1)))
    t = np.rint(vox.reshape(-1, 3) * 2).astype(np.int64)
    n1, n2 = 2 * mask.shape[1] + 1, 2 * mask.shape[2] + 1
    key = np.unique((t[:, 0] * n1 + t[:, 1]) * n2 + t[:, 2])
    twice = np.stack([key // (n1 * n2), (key // n2) % n1, key % n2], axis=1)
    return area, volume, twice


_TRI_CACHE: list[Any] = []


def _triangle_arrays() -> tuple[np.ndarray, np.ndarray]:
    if not _TRI_CACHE:
        from medimg.features._pyradiomics_tables import EDGE_MIDPOINTS, TRIANGLES

        mid = np.asarray(EDGE_MIDPOINTS, dtype=float)
        rows = [mid[list(t[k:k + 3])] for t in TRIANGLES for k in range(0, len(t), 3)]
        cfgs = [c for c, t in enumerate(TRIANGLES) for _ in range(0, len(t), 3)]
        _TRI_CACHE.extend([np.asarray(rows), np.asarray(cfgs)])
    return _TRI_CACHE[0], _TRI_CACHE[1]


def _max_sq_distance(points: np.ndarray) -> float:
    """Largest squared distance between two of ``points`` (convex hull first when there are many)."""
    if len(points) < 2:
        return 0.0
    if len(points) > 3 * points.shape[1] + 8:
        try:
            from medimg.core.hull import extreme_points

            try:
                points = points[extreme_points(points)]
            except ValueError:  # DegenerateHullError: no area / volume
                pass
        except ImportError:  # pragma: no cover
            pass
    best = 0.0
    for start in range(0, len(points), 512):
        chunk = points[start:start + 512]
        d = np.sum((chunk[:, None, :] - points[None, :, :]) ** 2, axis=2)
        best = max(best, float(d.max()))
    return best


def _diameters(twice: np.ndarray, spacing: np.ndarray) -> tuple[float, float, float, float]:
    """PyRadiomics's maximum diameters (slice, column, row, 3-D): the largest distance between two
    mesh vertices, overall and between vertices of equal z, y or x (``twice``: 2 x voxel coordinates)."""
    pts = twice * (spacing / 2.0)
    d3 = _max_sq_distance(pts)
    planes = []
    for axis in range(3):
        best = 0.0
        order = np.argsort(twice[:, axis], kind="stable")
        splits = np.flatnonzero(np.diff(twice[order, axis])) + 1
        rest = [d for d in range(3) if d != axis]
        groups = [g for g in np.split(order, splits) if len(g) > 1]
        # Largest bounding-box diagonal first; stop when no plane can beat the best distance.
        bounds = [float(np.sum((pts[g][:, rest].max(0) - pts[g][:, rest].min(0)) ** 2)) for g in groups]
        for k in np.argsort(bounds)[::-1]:
            if bounds[k] <= best:
                break
            best = max(best, _max_sq_distance(pts[groups[k]][:, rest]))
        planes.append(best)
    return (float(np.sqrt(planes[0])), float(np.sqrt(planes[1])), float(np.sqrt(planes[2])), float(np.sqrt(d3)))


def shape(roi: np.ndarray, spacing: tuple[float, float, float], names: Iterable[str],
          diagnostics: dict[str, float] | None = None) -> dict[str, float]:
    """PyRadiomics 3-D shape features of ``roi`` (cropped to its bounding box; ``spacing`` (z, y, x) mm).

    A negative mesh volume (PyRadiomics's half-table orientation on some configurations) is
    reproduced; ``diagnostics`` then gets the absolute value as the correct one."""
    sp = np.asarray(spacing, dtype=float)
    padded = np.pad(roi, 1)
    area, volume, twice = _mesh(padded, sp)
    if diagnostics is not None and volume < 0:
        diagnostics["shape_MeshVolume.pyradiomics_negative_corrected"] = abs(volume)
    names = tuple(names)
    diam = _diameters(twice, sp) if any("Diameter" in n for n in names) else (np.nan,) * 4
    coords = np.argwhere(padded).astype(float) * sp
    npix = len(coords)
    coords -= coords.mean(axis=0)
    coords /= np.sqrt(npix)
    ev = np.linalg.eigvals(coords.T.copy() @ coords)
    ev = np.where((ev < 0) & (ev > -1e-10), 0.0, ev)
    ev = np.sort(ev)
    out: dict[str, float] = {}
    for name in names:
        if name == "MeshVolume":
            v = volume
        elif name == "VoxelVolume":
            v = npix * float(sp[0] * sp[2] * sp[1])
        elif name == "SurfaceArea":
            v = area
        elif name == "SurfaceVolumeRatio":
            v = area / volume
        elif name == "Sphericity":
            v = (36 * np.pi * volume ** 2) ** (1.0 / 3.0) / area
        elif name == "Compactness1":
            v = volume / (area ** 1.5 * np.sqrt(np.pi))
        elif name == "Compactness2":
            v = 36.0 * np.pi * volume ** 2 / area ** 3
        elif name == "SphericalDisproportion":
            v = area / (36 * np.pi * volume ** 2) ** (1.0 / 3.0)
        elif name == "Maximum3DDiameter":
            v = diam[3]
        elif name == "Maximum2DDiameterSlice":
            v = diam[0]
        elif name == "Maximum2DDiameterColumn":
            v = diam[1]
        elif name == "Maximum2DDiameterRow":
            v = diam[2]
        elif name == "MajorAxisLength":
            v = np.sqrt(ev[2]) * 4 if ev[2] >= 0 else np.nan
        elif name == "MinorAxisLength":
            v = np.sqrt(ev[1]) * 4 if ev[1] >= 0 else np.nan
        elif name == "LeastAxisLength":
            v = np.sqrt(ev[0]) * 4 if ev[0] >= 0 else np.nan
        elif name == "Elongation":
            v = np.sqrt(ev[1] / ev[2]) if ev[1] >= 0 and ev[2] >= 0 else np.nan
        elif name == "Flatness":
            v = np.sqrt(ev[0] / ev[2]) if ev[0] >= 0 and ev[2] >= 0 else np.nan
        else:  # pragma: no cover
            raise KeyError(name)
        out[name] = float(np.real(v))
    return out


# ----------------------------------------------------------------------------------------------- GLCM

def glcm(q: np.ndarray, spacing: tuple[float, float, float], settings: Mapping[str, Any],
         names: Iterable[str]) -> dict[str, float]:
    """PyRadiomics GLCM features of the discretised ROI ``q`` (grey levels >= 1, 0 outside)."""
    distances = settings.get("distances", [1])
    offs = angles(q.shape, distances, force2d=settings.get("force2D", False),
                  force2d_dim=settings.get("force2Ddimension", 0))
    levels, ng = _present(q)
    na = len(offs)
    grid = _Grid(q, max(int(max(distances)), 1))
    nb = grid.neighbours(offs)
    gi = np.broadcast_to(grid.values[:, None], nb.shape)
    ok = nb > 0
    code = ((gi[ok] - 1) * ng + (nb[ok] - 1)) * na + np.broadcast_to(np.arange(na), nb.shape)[ok]
    full = np.bincount(code, minlength=ng * ng * na).reshape(ng, ng, na).astype(float)
    P = full[np.ix_(levels - 1, levels - 1)]
    symmetrical = settings.get("symmetricalGLCM", True)
    if symmetrical:
        P = P + P.transpose(1, 0, 2)
    norm = settings.get("weightingNorm")
    if norm is not None:
        P = np.sum(P * _weights(offs, spacing, norm, "glcm")[None, None, :], 2, keepdims=True)
    sums = P.sum((0, 1))
    if P.shape[2] > 1:
        keep = sums != 0
        if not keep.all():
            P, sums = P[:, :, keep], sums[keep]
    sums = np.where(sums == 0, np.nan, sums)
    P = P / sums[None, None, :]
    g = levels.astype(float)
    i, j = g[:, None], g[None, :]
    px = P.sum(1, keepdims=True)  # (Ng, 1, Na)
    py = P.sum(0, keepdims=True)  # (1, Ng, Na)
    ux = np.sum(i[:, :, None] * P, (0, 1), keepdims=True)
    uy = np.sum(j[:, :, None] * P, (0, 1), keepdims=True)
    ksum = np.arange(2, ng * 2 + 1, dtype=float)
    kdiff = np.arange(0, ng, dtype=float)
    isum = (i + j).ravel()
    idiff = np.abs(i - j).ravel()
    flatP = P.reshape(-1, P.shape[2])
    pxy_add = np.stack([np.bincount((isum - 2).astype(np.intp), weights=flatP[:, a], minlength=ksum.size)
                        for a in range(P.shape[2])], axis=1)  # (Nk, Na)
    pxy_sub = np.stack([np.bincount(idiff.astype(np.intp), weights=flatP[:, a], minlength=kdiff.size)
                        for a in range(P.shape[2])], axis=1)
    hxy = -np.sum(P * np.log2(P + _EPS), (0, 1))
    ij = (i + j)[:, :, None]
    out: dict[str, float] = {}
    for name in names:
        if name == "Autocorrelation":
            v = _nanmean(np.sum(P * (i * j)[:, :, None], (0, 1)))
        elif name == "JointAverage":
            v = float(ux.mean())
        elif name == "ClusterProminence":
            v = _nanmean(np.sum(P * (ij - ux - uy) ** 4, (0, 1)))
        elif name == "ClusterShade":
            v = _nanmean(np.sum(P * (ij - ux - uy) ** 3, (0, 1)))
        elif name == "ClusterTendency":
            v = _nanmean(np.sum(P * (ij - ux - uy) ** 2, (0, 1)))
        elif name == "Contrast":
            v = _nanmean(np.sum(P * (np.abs(i - j) ** 2)[:, :, None], (0, 1)))
        elif name == "Correlation":
            sigx = np.sum(P * (i[:, :, None] - ux) ** 2, (0, 1), keepdims=True) ** 0.5
            sigy = np.sum(P * (j[:, :, None] - uy) ** 2, (0, 1), keepdims=True) ** 0.5
            corm = np.sum(P * (i[:, :, None] - ux) * (j[:, :, None] - uy), (0, 1), keepdims=True)
            corr = corm / (sigx * sigy + _EPS)
            corr[sigx * sigy == 0] = 1
            v = _nanmean(corr)
        elif name == "DifferenceAverage":
            v = _nanmean(np.sum(kdiff[:, None] * pxy_sub, 0))
        elif name == "DifferenceEntropy":
            v = _nanmean(-np.sum(pxy_sub * np.log2(pxy_sub + _EPS), 0))
        elif name == "DifferenceVariance":
            davg = np.sum(kdiff[:, None] * pxy_sub, 0, keepdims=True)
            v = _nanmean(np.sum(pxy_sub * (kdiff[:, None] - davg) ** 2, 0))
        elif name == "JointEnergy":
            v = _nanmean(np.sum(P ** 2, (0, 1)))
        elif name == "JointEntropy":
            v = _nanmean(hxy)
        elif name == "Imc1":
            hx = -np.sum(px * np.log2(px + _EPS), (0, 1))
            hy = -np.sum(py * np.log2(py + _EPS), (0, 1))
            hxy1 = -np.sum(P * np.log2(px * py + _EPS), (0, 1))
            div = np.fmax(hx, hy)
            imc1 = hxy - hxy1
            imc1 = np.where(div != 0, imc1 / np.where(div != 0, div, 1), 0.0)
            v = _nanmean(imc1)
        elif name == "Imc2":
            hxy2 = -np.sum((px * py) * np.log2(px * py + _EPS), (0, 1))
            with np.errstate(invalid="ignore"):
                imc2 = (1 - np.e ** (-2 * (hxy2 - hxy))) ** 0.5
            imc2[hxy2 == hxy] = 0
            v = _nanmean(imc2)
        elif name == "Idm":
            v = _nanmean(np.sum(pxy_sub / (1 + kdiff[:, None] ** 2), 0))
        elif name == "Idmn":
            v = _nanmean(np.sum(pxy_sub / (1 + (kdiff[:, None] ** 2) / (ng ** 2)), 0))
        elif name == "Id":
            v = _nanmean(np.sum(pxy_sub / (1 + kdiff[:, None]), 0))
        elif name == "Idn":
            v = _nanmean(np.sum(pxy_sub / (1 + kdiff[:, None] / ng), 0))
        elif name == "InverseVariance":
            v = _nanmean(np.sum(pxy_sub[1:] / kdiff[1:, None] ** 2, 0))
        elif name == "MaximumProbability":
            v = _nanmean(np.amax(P, (0, 1)))
        elif name == "SumAverage":
            v = _nanmean(np.sum(ksum[:, None] * pxy_add, 0))
        elif name == "SumEntropy":
            v = _nanmean(-np.sum(pxy_add * np.log2(pxy_add + _EPS), 0))
        elif name == "SumSquares":
            v = _nanmean(np.sum(P * (i[:, :, None] - ux) ** 2, (0, 1)))
        elif name == "MCC":
            v = _mcc(P, px, py)
        else:  # pragma: no cover
            raise KeyError(name)
        out[name] = float(v)
    return out


def _mcc(P: np.ndarray, px: np.ndarray, py: np.ndarray) -> float:
    # Q(i, j) = sum_k P(i, k) P(j, k) / (p_x(i) p_y(k) + eps), per angle; MCC = sqrt of its 2nd largest eigenvalue.
    ng = P.shape[0]
    if ng < 2:
        return 1.0
    pxk0 = px[:, 0, :]  # (Ng, Na): p_x(i)
    q = np.zeros((ng, ng, P.shape[2]))
    for k in range(ng):
        q += (P[:, None, k, :] * P[None, :, k, :]) / (pxk0[:, None, :] * py[0, k][None, None, :] + _EPS)
    ev = np.linalg.eigvals(q.transpose(2, 0, 1))
    ev.sort()
    return float(np.nanmean(np.sqrt(ev[:, -2])).real)


def _weights(offs: np.ndarray, spacing: tuple[float, float, float], norm: str, kind: str) -> np.ndarray:
    sp = np.asarray(spacing, dtype=float)
    a = np.abs(offs) * sp[None, :]
    if norm == "infinity":
        d = a.max(1)
        return np.exp(-d ** 2) if kind == "glcm" else d
    if norm == "euclidean":
        return np.exp(-np.sum(a ** 2, 1)) if kind == "glcm" else np.sqrt(np.sum(a ** 2, 1))
    if norm == "manhattan":
        return np.exp(-np.sum(a, 1) ** 2) if kind == "glcm" else np.sum(a, 1)
    return np.ones(len(offs))


# ---------------------------------------------------------------------------------------------- GLRLM

def _glrlm_matrix(q: np.ndarray, settings: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    offs = angles(q.shape, (1,), force2d=settings.get("force2D", False),
                  force2d_dim=settings.get("force2Ddimension", 0))
    _, ng = _present(q)
    nr = int(max(q.shape))
    na = len(offs)
    grid = _Grid(q, 1)
    shape_ = np.asarray(q.shape)
    P = np.zeros((ng, nr, na))
    gl = grid.values
    for a, off in enumerate(offs):
        step = int(off @ grid.strides)
        prev = grid.flat[grid.index - step]
        nxt = grid.flat[grid.index + step]
        starts = prev != gl
        ends = nxt != gl
        # Line of each voxel: the voxel where the line along ``off`` enters the box.
        c = grid.coords
        back = np.full(len(c), np.iinfo(np.intp).max, dtype=np.intp)
        for d in range(3):
            if off[d] > 0:
                back = np.minimum(back, c[:, d])
            elif off[d] < 0:
                back = np.minimum(back, shape_[d] - 1 - c[:, d])
        line = np.ravel_multi_index(tuple((c - back[:, None] * off[None, :]).T), q.shape)
        s_key = np.lexsort((grid.index[starts], line[starts]))
        e_key = np.lexsort((grid.index[ends], line[ends]))
        s_idx = grid.index[starts][s_key]
        e_idx = grid.index[ends][e_key]
        length = (e_idx - s_idx) // step + 1
        g = gl[starts][s_key]
        np.add.at(P[:, :, a], (g - 1, length - 1), 1)
        if length.max(initial=0) <= 1 and np.unique(line).size == line.size:
            P[:, 0, a] = 0  # no line holds two ROI voxels: PyRadiomics drops this angle's counts
    return P, offs


def glrlm(q: np.ndarray, spacing: tuple[float, float, float], settings: Mapping[str, Any],
          names: Iterable[str]) -> dict[str, float]:
    """PyRadiomics GLRLM features of the discretised ROI ``q``."""
    P, offs = _glrlm_matrix(q, settings)
    levels, _ = _present(q)
    P = P[levels - 1]
    norm = settings.get("weightingNorm")
    if norm is not None:
        P = np.sum(P * _weights(offs, spacing, norm, "glrlm")[None, None, :], 2, keepdims=True)
    nr = P.sum((0, 1))
    if P.shape[2] > 1:
        keep = nr != 0
        if not keep.all():
            P, nr = P[:, :, keep], nr[keep]
    nr = np.where(nr == 0, np.nan, nr)
    pr = P.sum(0)  # (Nr, Na)
    pg = P.sum(1)  # (Ng, Na)
    iv = levels.astype(float)
    jv = np.arange(1, P.shape[1] + 1, dtype=float)
    keep_r = pr.sum(1) != 0
    P, jv, pr = P[:, keep_r], jv[keep_r], pr[keep_r]
    out: dict[str, float] = {}
    for name in names:
        if name == "ShortRunEmphasis":
            v = np.sum(pr / jv[:, None] ** 2, 0) / nr
        elif name == "LongRunEmphasis":
            v = np.sum(pr * jv[:, None] ** 2, 0) / nr
        elif name == "GrayLevelNonUniformity":
            v = np.sum(pg ** 2, 0) / nr
        elif name == "GrayLevelNonUniformityNormalized":
            v = np.sum(pg ** 2, 0) / nr ** 2
        elif name == "RunLengthNonUniformity":
            v = np.sum(pr ** 2, 0) / nr
        elif name == "RunLengthNonUniformityNormalized":
            v = np.sum(pr ** 2, 0) / nr ** 2
        elif name == "RunPercentage":
            v = nr / np.sum(pr * jv[:, None], 0)
        elif name == "GrayLevelVariance":
            p = pg / nr[None, :]
            u = np.sum(p * iv[:, None], 0, keepdims=True)
            v = np.sum(p * (iv[:, None] - u) ** 2, 0)
        elif name == "RunVariance":
            p = pr / nr[None, :]
            u = np.sum(p * jv[:, None], 0, keepdims=True)
            v = np.sum(p * (jv[:, None] - u) ** 2, 0)
        elif name == "RunEntropy":
            p = P / nr[None, None, :]
            v = -np.sum(p * np.log2(p + _EPS), (0, 1))
        elif name == "LowGrayLevelRunEmphasis":
            v = np.sum(pg / iv[:, None] ** 2, 0) / nr
        elif name == "HighGrayLevelRunEmphasis":
            v = np.sum(pg * iv[:, None] ** 2, 0) / nr
        elif name == "ShortRunLowGrayLevelEmphasis":
            v = np.sum(P / ((iv[:, None, None] ** 2) * (jv[None, :, None] ** 2)), (0, 1)) / nr
        elif name == "ShortRunHighGrayLevelEmphasis":
            v = np.sum(P * (iv[:, None, None] ** 2) / (jv[None, :, None] ** 2), (0, 1)) / nr
        elif name == "LongRunLowGrayLevelEmphasis":
            v = np.sum(P * (jv[None, :, None] ** 2) / (iv[:, None, None] ** 2), (0, 1)) / nr
        elif name == "LongRunHighGrayLevelEmphasis":
            v = np.sum(P * (jv[None, :, None] ** 2) * (iv[:, None, None] ** 2), (0, 1)) / nr
        else:  # pragma: no cover
            raise KeyError(name)
        out[name] = _nanmean(v)
    return out


# ---------------------------------------------------------------------------------------------- GLSZM

def _structure(q: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    offs = angles(q.shape, (1,), force2d=settings.get("force2D", False),
                  force2d_dim=settings.get("force2Ddimension", 0), bidirectional=True)
    st = np.zeros((3, 3, 3), dtype=bool)
    st[1, 1, 1] = True
    for off in offs:
        st[tuple(off + 1)] = True
    return st


def glszm_matrix(q: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    """PyRadiomics's GLSZM (Ng, Ns): zones are connected (26-neighbour in 3-D) same-level voxels."""
    from scipy import ndimage

    levels, ng = _present(q)
    st = _structure(q, settings)
    # Label every level at once: neighbours of different levels never join, so label each level's
    # voxels with its own offset of label numbers.
    zone_gl: list[np.ndarray] = []
    zone_size: list[np.ndarray] = []
    for g in levels:
        lab, n = ndimage.label(q == g, structure=st)
        sizes = np.bincount(lab.ravel())[1:]
        zone_gl.append(np.full(n, g))
        zone_size.append(sizes)
    gls = np.concatenate(zone_gl)
    sizes = np.concatenate(zone_size)
    P = np.zeros((ng, int(sizes.max())))
    np.add.at(P, (gls - 1, sizes - 1), 1)
    return P


def glszm(q: np.ndarray, spacing: tuple[float, float, float], settings: Mapping[str, Any],
          names: Iterable[str]) -> dict[str, float]:
    """PyRadiomics GLSZM features of the discretised ROI ``q``."""
    levels, _ = _present(q)
    P = glszm_matrix(q, settings)[levels - 1]
    return _zone_features(P, levels, names, zone=True)


def _zone_features(P: np.ndarray, levels: np.ndarray, names: Iterable[str], *, zone: bool) -> dict[str, float]:
    ps = P.sum(0)
    pg = P.sum(1)
    iv = levels.astype(float)
    jv = np.arange(1, P.shape[1] + 1, dtype=float)
    nz = P.sum() or 1.0
    npx = np.sum(ps * jv) or 1.0
    keep = ps != 0
    P, jv, ps = P[:, keep], jv[keep], ps[keep]
    out: dict[str, float] = {}
    alias = {} if zone else {
        "SmallDependenceEmphasis": "SmallAreaEmphasis", "LargeDependenceEmphasis": "LargeAreaEmphasis",
        "DependenceNonUniformity": "SizeZoneNonUniformity",
        "DependenceNonUniformityNormalized": "SizeZoneNonUniformityNormalized",
        "DependenceVariance": "ZoneVariance", "DependenceEntropy": "ZoneEntropy",
        "LowGrayLevelEmphasis": "LowGrayLevelZoneEmphasis", "HighGrayLevelEmphasis": "HighGrayLevelZoneEmphasis",
        "SmallDependenceLowGrayLevelEmphasis": "SmallAreaLowGrayLevelEmphasis",
        "SmallDependenceHighGrayLevelEmphasis": "SmallAreaHighGrayLevelEmphasis",
        "LargeDependenceLowGrayLevelEmphasis": "LargeAreaLowGrayLevelEmphasis",
        "LargeDependenceHighGrayLevelEmphasis": "LargeAreaHighGrayLevelEmphasis",
    }
    for name in names:
        key = alias.get(name, name)
        if key == "SmallAreaEmphasis":
            v = np.sum(ps / jv ** 2) / nz
        elif key == "LargeAreaEmphasis":
            v = np.sum(ps * jv ** 2) / nz
        elif key == "GrayLevelNonUniformity":
            v = np.sum(pg ** 2) / nz
        elif key == "GrayLevelNonUniformityNormalized":
            v = np.sum(pg ** 2) / nz ** 2
        elif key == "SizeZoneNonUniformity":
            v = np.sum(ps ** 2) / nz
        elif key == "SizeZoneNonUniformityNormalized":
            v = np.sum(ps ** 2) / nz ** 2
        elif key == "ZonePercentage":
            v = nz / npx
        elif key == "GrayLevelVariance":
            p = pg / nz
            u = np.sum(p * iv)
            v = np.sum(p * (iv - u) ** 2)
        elif key == "ZoneVariance":
            p = ps / nz
            u = np.sum(p * jv)
            v = np.sum(p * (jv - u) ** 2)
        elif key == "ZoneEntropy":
            p = P / nz
            v = -np.sum(p * np.log2(p + _EPS))
        elif key == "LowGrayLevelZoneEmphasis":
            v = np.sum(pg / iv ** 2) / nz
        elif key == "HighGrayLevelZoneEmphasis":
            v = np.sum(pg * iv ** 2) / nz
        elif key == "SmallAreaLowGrayLevelEmphasis":
            v = np.sum(P / ((iv[:, None] ** 2) * (jv[None, :] ** 2))) / nz
        elif key == "SmallAreaHighGrayLevelEmphasis":
            v = np.sum(P * (iv[:, None] ** 2) / (jv[None, :] ** 2)) / nz
        elif key == "LargeAreaLowGrayLevelEmphasis":
            v = np.sum(P * (jv[None, :] ** 2) / (iv[:, None] ** 2)) / nz
        elif key == "LargeAreaHighGrayLevelEmphasis":
            v = np.sum(P * (iv[:, None] ** 2) * (jv[None, :] ** 2)) / nz
        else:  # pragma: no cover
            raise KeyError(name)
        out[name] = float(v)
    return out


# ------------------------------------------------------------------------------------------ GLDM, NGTDM

def _both_directions(q: np.ndarray, settings: Mapping[str, Any]) -> tuple[_Grid, np.ndarray]:
    distances = settings.get("distances", [1])
    offs = angles(q.shape, distances, force2d=settings.get("force2D", False),
                  force2d_dim=settings.get("force2Ddimension", 0))
    grid = _Grid(q, max(int(max(distances)), 1))
    nb = grid.neighbours(np.concatenate([offs, -offs]))
    return grid, nb


def gldm(q: np.ndarray, spacing: tuple[float, float, float], settings: Mapping[str, Any],
         names: Iterable[str]) -> dict[str, float]:
    """PyRadiomics GLDM features of ``q`` (dependence: the voxel itself and every neighbour within
    ``gldm_a`` grey levels)."""
    grid, nb = _both_directions(q, settings)
    alpha = settings.get("gldm_a", 0)
    levels, ng = _present(q)
    dep = np.sum((nb > 0) & (np.abs(grid.values[:, None] - nb) <= alpha), 1)
    P = np.zeros((ng, nb.shape[1] + 1))
    np.add.at(P, (grid.values - 1, dep), 1)
    return _zone_features(P[levels - 1], levels, names, zone=False)


def ngtdm(q: np.ndarray, spacing: tuple[float, float, float], settings: Mapping[str, Any],
          names: Iterable[str]) -> dict[str, float]:
    """PyRadiomics NGTDM features of ``q`` (a voxel without neighbours counts with s = 0)."""
    grid, nb = _both_directions(q, settings)
    valid = nb > 0
    count = valid.sum(1)
    total = np.where(valid, nb, 0).sum(1).astype(float)
    g = grid.values
    diff = np.abs(np.where(count > 0, g - total / np.maximum(count, 1), 0.0))
    ng = int(g.max())
    n = np.bincount(g - 1, minlength=ng).astype(float)
    s = np.bincount(g - 1, weights=diff, minlength=ng)
    keep = n > 0
    n, s = n[keep], s[keep]
    iv = (np.arange(ng) + 1.0)[keep]
    nvp = n.sum()
    p = n / nvp
    ngp = int(np.sum(n > 0))
    out: dict[str, float] = {}
    for name in names:
        if name == "Coarseness":
            t = np.sum(p * s)
            v = 1 / t if t != 0 else 1e6
        elif name == "Contrast":
            div = ngp * (ngp - 1)
            v = (np.sum(p[:, None] * p[None, :] * (iv[:, None] - iv[None, :]) ** 2) * np.sum(s) / nvp)
            v = v / div if div != 0 else 0.0
        elif name == "Busyness":
            ip = iv * p
            absdiff = np.sum(np.abs(ip[:, None] - ip[None, :]))
            v = np.sum(p * s) / absdiff if absdiff != 0 else 0.0
        elif name == "Complexity":
            ps_ = p * s
            num = ps_[:, None] + ps_[None, :]
            den = p[:, None] + p[None, :]
            den = np.where(den == 0, 1, den)
            v = np.sum(np.abs(iv[:, None] - iv[None, :]) * num / den) / nvp
        elif name == "Strength":
            ssum = np.sum(s)
            st = np.sum((p[:, None] + p[None, :]) * (iv[:, None] - iv[None, :]) ** 2)
            v = st / ssum if ssum != 0 else 0.0
        else:  # pragma: no cover
            raise KeyError(name)
        out[name] = float(v)
    return out
