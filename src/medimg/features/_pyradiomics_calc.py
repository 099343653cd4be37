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

import functools
import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from medimg.core import jit

__all__ = ["angles", "discretise", "binned", "Binned", "firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm",
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
    return _angles(tuple(moving), tuple(sorted({int(v) for v in distances})), bidirectional).copy()


@functools.lru_cache(maxsize=64)
def _angles(moving: tuple[bool, ...], distances: tuple[int, ...], bidirectional: bool) -> np.ndarray:
    out: list[tuple[int, ...]] = []
    for d in distances:
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
    return _width_edges(values.min(), values.max(), bin_width)


def _width_edges(minimum: Any, maximum: Any, bin_width: float) -> np.ndarray:
    """:func:`bin_edges` with a fixed width from the values' minimum and maximum (NumPy scalars of
    the values' dtype: the arithmetic is done in it)."""
    low = minimum - (minimum % bin_width)
    high = maximum + 2 * bin_width
    edges = np.arange(low, high, bin_width)
    if len(edges) == 1:
        edges = np.asarray([edges[0] - 0.5, edges[0] + 0.5])
    return edges


def _range_edges(minimum: Any, maximum: Any, dtype: np.dtype, settings: Mapping[str, Any]) -> np.ndarray:
    """:func:`bin_edges` of values of ``dtype`` from their minimum and maximum alone (the same
    edges: NumPy derives them from these two and the dtype)."""
    bin_count = settings.get("binCount")
    if bin_count is not None:
        edges = np.histogram_bin_edges(np.asarray([minimum, maximum], dtype=dtype), bin_count)
        edges[-1] += 1
        return edges
    return _width_edges(dtype.type(minimum), dtype.type(maximum), settings.get("binWidth", 25))


class Binned:
    """A discretised ROI: ``q`` (grey levels 1..Ng inside, 0 outside, the box's shape) and, from the
    compiled path, the ROI's values (float64, C order: ``image[roi]``) and the voxel count of each
    grey level 0..len(edges) and the values' (minimum, maximum) (``None`` on the NumPy path)."""

    __slots__ = ("q", "values", "counts", "extent")

    def __init__(self, q: np.ndarray, values: np.ndarray | None = None, counts: np.ndarray | None = None,
                 extent: tuple[float, float] | None = None) -> None:
        self.q = q
        self.values = values
        self.counts = counts
        self.extent = extent


#: The dtypes whose values float64 holds exactly (the compiled binning compares in float64).
_EXACT_DTYPES = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.int8, np.uint8, np.int16, np.uint16,
                                                  np.int32, np.uint32))


def binned(image: np.ndarray, roi: np.ndarray, settings: Mapping[str, Any]) -> Binned:
    """:func:`discretise`, with the ROI's values and grey-level counts where the compiled kernels
    (:mod:`._prad_first_kernels`: one pass gathering the values and their range, one binning them)
    give them; the NumPy path where the values are not all finite."""
    if jit.wanted() and image.dtype in _EXACT_DTYPES and image.shape == roi.shape:
        from medimg.features import _prad_first_kernels as kernels

        values, minimum, maximum, finite = kernels.gather(image, roi)
        if finite and values.size:
            edges = _range_edges(minimum, maximum, image.dtype, settings)
            if edges.ndim == 1 and edges.size and not np.any(edges[1:] < edges[:-1]):
                q, counts = kernels.levels(roi, values, edges)
                return Binned(q, values, counts, (minimum, maximum))
    return Binned(_discretise(image, roi, settings))


def discretise(image: np.ndarray, roi: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    """Grey levels 1..Ng inside ``roi`` (0 outside), binned as PyRadiomics bins (module notes)."""
    return binned(image, roi, settings).q


def _discretise(image: np.ndarray, roi: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    values = image[roi]
    edges = bin_edges(values, bin_width=settings.get("binWidth", 25), bin_count=settings.get("binCount"))
    out = np.zeros(image.shape, dtype=np.intp)
    if jit.wanted():
        from medimg.features import _prad_shape_kernels as kernels

        out[roi] = kernels.digitize(values, edges)
    else:
        out[roi] = np.digitize(values, edges)
    return out


class _Grid:
    """The discretised ROI padded with zeros, the flat indices of its voxels (C order) and their
    grey levels, for neighbour look-ups."""

    def __init__(self, q: np.ndarray, pad: int) -> None:
        self.shape = q.shape
        self.pad = pad
        self.padded = np.pad(q, pad)
        self.flat = self.padded.ravel()
        self.strides = np.asarray([self.padded.shape[1] * self.padded.shape[2], self.padded.shape[2], 1])
        self.index = np.flatnonzero(self.flat)
        self.values = self.flat[self.index]
        self._vid: np.ndarray | None = None
        self._ids: dict[bytes, np.ndarray] = {}
        self._coords: np.ndarray | None = None

    @property
    def coords(self) -> np.ndarray:
        """Voxel coordinates (z, y, x) in the unpadded array, shape (N, 3)."""
        if self._coords is None:
            self._coords = np.stack(np.unravel_index(self.index, self.padded.shape), axis=1) - self.pad
        return self._coords

    def neighbours(self, offsets: np.ndarray) -> np.ndarray:
        """Grey level of each voxel's neighbour at each offset (0: outside), shape (N, Na)."""
        return self.flat[self.index[:, None] + (offsets @ self.strides)[None, :]]

    def neighbour_ids(self, offsets: np.ndarray) -> np.ndarray:
        """Voxel number (row of ``values``) of each voxel's neighbour at each offset (-1: outside),
        shape (N, Na) (cached per offsets)."""
        key = offsets.tobytes()
        if key not in self._ids:
            self._ids[key] = self._neighbour_ids(offsets)
        return self._ids[key]

    def _neighbour_ids(self, offsets: np.ndarray) -> np.ndarray:
        if self._vid is None:
            # int32 where it fits: half the memory traffic of the (N, Na) look-ups
            dtype = np.int32 if self.index.size * 26 < 2**31 else np.int64
            self._vid = np.full(self.flat.size, -1, dtype=dtype)
            self._vid[self.index] = np.arange(self.index.size, dtype=dtype)
        return self._vid[self.index[:, None] + (offsets @ self.strides)[None, :]]


class Discretised:
    """A discretised ROI ``q`` (grey levels 1..Ng inside, 0 outside) and what the texture classes
    share: the padded grids, the grey levels present and the neighbour tables (computed once)."""

    def __init__(self, q: np.ndarray, counts: np.ndarray | None = None) -> None:
        self.q = q
        self._counts = counts
        self._grids: dict[int, _Grid] = {}
        self._cache: dict[Any, Any] = {}

    @functools.cached_property
    def levels(self) -> np.ndarray:
        """The grey levels present, ascending (from the voxel count of each level where the binning
        gave it (:class:`Binned`), else from the padded grid where one is built already)."""
        if self._counts is not None:
            return np.flatnonzero(self._counts[1:]) + 1
        grid = self._grids.get(1)
        counts = np.bincount(grid.values if grid is not None else self.q.ravel())  # [0]: outside, dropped
        return np.flatnonzero(counts[1:]) + 1

    @functools.cached_property
    def ng(self) -> int:
        """The largest grey level present."""
        return int(self.levels[-1])

    def grid(self, pad: int) -> _Grid:
        """The grid padded by ``pad`` voxels (cached)."""
        if pad not in self._grids:
            self._grids[pad] = _Grid(self.q, pad)
        return self._grids[pad]

    def both_directions(self, settings: Mapping[str, Any]) -> tuple[_Grid, np.ndarray, np.ndarray]:
        """The grid, PyRadiomics's angles for ``distances`` (one of each pair) and the neighbour
        grey levels at those angles then at their opposites, shape (N, 2 Na) (cached)."""
        distances = tuple(int(v) for v in settings.get("distances", [1]))
        key = ("both", distances, bool(settings.get("force2D", False)), int(settings.get("force2Ddimension", 0)))
        if key not in self._cache:
            offs = angles(self.q.shape, distances, force2d=key[2], force2d_dim=key[3])
            grid = self.grid(max(max(distances), 1))
            self._cache[key] = (grid, offs, grid.neighbours(np.concatenate([offs, -offs])))
        return self._cache[key]


def _prepared(q: np.ndarray | Discretised) -> Discretised:
    return q if isinstance(q, Discretised) else Discretised(q)


def _nonzero(a: np.ndarray) -> tuple[np.ndarray, ...]:
    """``numpy.nonzero`` of an n-D array (the same indices, in the same order), several times faster."""
    return np.unravel_index(np.flatnonzero(a), a.shape)


def _present(q: np.ndarray | Discretised) -> tuple[np.ndarray, int]:
    d = _prepared(q)
    return d.levels, d.ng


def _nanmean(values: np.ndarray) -> float:
    """Mean of the values that are not NaN (NaN when none): numpy.nanmean without its overhead."""
    values = np.asarray(values, dtype=float).ravel()
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


# ------------------------------------------------------------------------------------------ first order

#: The quantiles of PyRadiomics's percentiles (10, 25, 75, 90), as ``numpy.percentile`` divides them.
_FIRSTORDER_Q = np.true_divide(np.asarray([10, 25, 75, 90]), 100)


def _sorted_percentiles(xs: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``numpy.percentile(x, 100 q)`` (method linear) from ``xs = numpy.sort(x)`` (no NaN, not empty):
    NumPy's own steps (virtual index, floor, the last index for those past the end, its two-sided
    lerp), on the sorted values instead of a partition: the same order statistics, the same values."""
    n = xs.shape[0]
    virtual = (n - 1) * q
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1
    previous[above] = -1
    following[above] = -1
    previous = previous.astype(np.intp)
    following = following.astype(np.intp)
    a = xs[previous]
    b = xs[following]
    gamma = np.asanyarray(virtual - previous, dtype=virtual.dtype)
    diff = b - a
    result = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=result, where=gamma >= 0.5, casting="unsafe", dtype=result.dtype.type)
    return result


def _sorted_median(xs: np.ndarray) -> float:
    """``numpy.median(x)`` from ``xs = numpy.sort(x)`` (no NaN, not empty): the mean of the middle one
    or two values, as NumPy takes it."""
    n = xs.shape[0]
    half = n // 2
    return float(np.mean(xs[half:half + 1] if n % 2 else xs[half - 1:half + 1]))


def firstorder(image: np.ndarray, roi: np.ndarray, spacing: tuple[float, float, float],
               settings: Mapping[str, Any], names: Iterable[str], q: np.ndarray | Binned | None = None) -> dict[str, float]:
    """PyRadiomics first-order features of the voxels of ``roi`` (``spacing`` (z, y, x) mm);
    ``q``: the ROI already discretised (:func:`discretise` or :func:`binned`), if at hand."""
    shift = settings.get("voxelArrayShift", 0)
    if jit.wanted():
        out = _firstorder_compiled(image, roi, spacing, settings, names, q)
        if out is not None:
            return out
    if isinstance(q, Binned):
        q = q.q
    x = image[roi].astype(float)
    if q is None:
        q = discretise(image, roi, settings)
    counts = np.bincount(q[roi])
    counts = counts[counts > 0]
    p = counts / counts.sum()
    n = x.size
    mean = x.mean()
    dev = x - mean
    dev2 = dev * dev
    m2 = np.mean(dev2)
    xs = np.sort(x)
    if n and np.isnan(xs[-1]):  # NaN voxels: NumPy's own order statistics (NaN results)
        p10, p25, p75, p90 = np.percentile(x, [10, 25, 75, 90])
        median, minimum, maximum = np.median(x), x.min(), x.max()
    elif n:
        p10, p25, p75, p90 = _sorted_percentiles(xs, _FIRSTORDER_Q)
        median, minimum, maximum = _sorted_median(xs), xs[0], xs[-1]
    else:
        p10 = p25 = p75 = p90 = median = minimum = maximum = np.nan
    energy = float(np.sum((x + shift) ** 2))

    def robust_mad() -> float:
        sub = x[(x >= p10) & (x <= p90)]
        return np.mean(np.abs(sub - sub.mean()))

    return _firstorder_values(names, spacing, n, {
        "p10": p10, "p25": p25, "p75": p75, "p90": p90, "median": median, "minimum": minimum, "maximum": maximum,
        "mean": mean, "energy": energy, "m2": m2, "p": p, "m3": lambda: np.mean(dev2 * dev),
        "m4": lambda: np.mean(dev2 * dev2), "mad": lambda: np.mean(np.abs(dev)), "robust": robust_mad,
        "std": lambda: np.std(x)})


def _firstorder_compiled(image: np.ndarray, roi: np.ndarray, spacing: tuple[float, float, float],
                         settings: Mapping[str, Any], names: Iterable[str], q: np.ndarray | Binned | None
                         ) -> dict[str, float] | None:
    """:func:`firstorder` from the compiled kernels (:func:`._prad_first_kernels.moments`: every sum
    in NumPy's own pairwise order, the order statistics selected without a sort): the same values
    bit for bit. ``None`` (the NumPy path then) for an empty ROI or values not all finite."""
    from medimg.features import _prad_first_kernels as kernels

    if not (isinstance(q, Binned) and q.values is not None):
        if image.dtype not in _EXACT_DTYPES or image.shape != roi.shape:
            return None
        if q is None:
            q = binned(image, roi, settings)  # the values gathered once, for the binning and these sums
        if not isinstance(q, Binned) or q.values is None:  # a discretisation without the values, or NumPy binning
            box = q.q if isinstance(q, Binned) else q
            values, minimum, maximum, finite = kernels.gather(image, roi)
            if not finite or not values.size:
                return None
            q = Binned(box, values, np.bincount(box[roi]), (minimum, maximum))
    values, counts, extent = q.values, q.counts, q.extent
    n = values.size
    shift = settings.get("voxelArrayShift", 0)
    (mean, energy, s2, s1, s3, s4, minimum, maximum, median, _, robust,
     p10, p25, p75, p90) = kernels.moments(values, shift, _FIRSTORDER_Q, extent)
    energy = float(energy)
    m2 = s2 / n

    def probabilities() -> np.ndarray:
        c = counts[counts > 0]
        return c / c.sum()

    return _firstorder_values(names, spacing, n, {
        "p10": p10, "p25": p25, "p75": p75, "p90": p90, "median": median, "minimum": minimum, "maximum": maximum,
        "mean": mean, "energy": energy, "m2": m2, "p": probabilities, "m3": lambda: s3 / n, "m4": lambda: s4 / n,
        "mad": lambda: s1 / n, "robust": robust, "std": lambda: np.sqrt(m2)})


def _firstorder_values(names: Iterable[str], spacing: tuple[float, float, float], n: int,
                       stats: Mapping[str, Any]) -> dict[str, float]:
    """PyRadiomics's first-order features ``names`` from the ROI's statistics (``n`` voxels): each
    entry of ``stats`` a value or a function giving it, called only when a feature needs it. Keys:
    p10, p25, p75, p90, median, minimum, maximum, mean, energy (of the shifted values), m2 / m3 /
    m4 (the central moments), mad (mean absolute deviation), robust (of the 10-90 % values), std,
    p (the grey levels' probabilities)."""
    cache: dict[str, Any] = {}

    def get(key: str) -> Any:
        if key not in cache:
            value = stats[key]
            cache[key] = value() if callable(value) else value
        return cache[key]

    out: dict[str, float] = {}
    for name in names:
        if name == "10Percentile":
            v = get("p10")
        elif name == "90Percentile":
            v = get("p90")
        elif name == "Energy":
            v = get("energy")
        elif name == "TotalEnergy":
            v = get("energy") * float(np.prod(spacing))
        elif name == "Entropy":
            p = get("p")
            v = -np.sum(p * np.log2(p + _EPS))
        elif name == "InterquartileRange":
            v = get("p75") - get("p25")
        elif name == "Kurtosis":
            m2 = get("m2")
            v = get("m4") / m2 ** 2 if m2 != 0 else 0.0
        elif name == "Skewness":
            m2 = get("m2")
            v = get("m3") / m2 ** 1.5 if m2 != 0 else 0.0
        elif name == "Maximum":
            v = get("maximum")
        elif name == "Minimum":
            v = get("minimum")
        elif name == "Mean":
            v = get("mean")
        elif name == "MeanAbsoluteDeviation":
            v = get("mad")
        elif name == "Median":
            v = get("median")
        elif name == "Range":
            v = get("maximum") - get("minimum")
        elif name == "RobustMeanAbsoluteDeviation":
            v = get("robust")
        elif name == "RootMeanSquared":
            v = np.sqrt(get("energy") / n) if n else 0.0
        elif name == "StandardDeviation":
            v = np.sqrt(get("m2"))
        elif name == "Uniformity":
            v = np.sum(get("p") ** 2)
        elif name == "Variance":
            v = get("std") ** 2
        else:  # pragma: no cover - names are checked by the caller
            raise KeyError(name)
        out[name] = float(v)
    return out


# ------------------------------------------------------------------------------------------------ shape

def _mesh(mask: np.ndarray, spacing: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Surface area (mm^2), signed volume (mm^3) and the vertices (twice their voxel coordinates,
    integers, unique) of PyRadiomics's mesh of the padded ``mask``.

    Nothing is built per triangle: a cube's triangles have the same area wherever the cube is, and
    their signed volume (sum of det(a, b, c) / 6 over the triangles, vertices in mm) is
    ``(D + o . N) / 6`` for the cube at ``o``, with ``D`` and ``N`` (the sums of det(a', b', c')
    and of (b' - a') x (c' - a') over its triangles, corners relative to the cube) tabulated per
    configuration. The vertices are the midpoints of the grid edges whose two voxels differ:
    marching cubes puts a vertex on every such edge."""
    from medimg.features._pyradiomics_tables import CORNERS

    area_tab, det_tab, normal_tab = _mesh_tables(spacing)
    m = mask.astype(np.uint8)
    s0, s1, s2 = (n - 1 for n in m.shape)
    config = np.zeros((s0, s1, s2), dtype=np.uint8)
    for bit, (dz, dy, dx) in enumerate(CORNERS):
        config |= m[dz:dz + s0, dy:dy + s1, dx:dx + s2] << bit
    cubes = _nonzero((config > 0) & (config < 255))
    cfg = config[cubes]
    flip = cfg >= 128
    sgn = np.where(flip, -1.0, 1.0)
    cfg = np.where(flip, cfg ^ 0xFF, cfg)
    origin = np.stack(cubes, axis=1) * spacing  # (Nc, 3) mm
    area = float(np.sum(area_tab[cfg]))
    volume = float(np.sum(sgn * (det_tab[cfg] + np.einsum("ij,ij->i", origin, normal_tab[cfg])))) / 6.0
    parts = []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        edge = np.stack(_nonzero(mask[tuple(lo)] != mask[tuple(hi)]), axis=1) * 2
        edge[:, axis] += 1
        parts.append(edge)
    return area, volume, np.concatenate(parts)


_MESH_TABLES: dict[tuple[float, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _mesh_tables(spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per configuration (0-127): its triangles' total area, sum of det(a', b', c') and sum of
    (b' - a') x (c' - a') (corners in mm relative to the cube's first corner)."""
    key = tuple(float(v) for v in spacing)
    if key not in _MESH_TABLES:
        tri_vertices, tri_cfg = _triangle_arrays()
        v = tri_vertices * np.asarray(key)
        a, b, c = v[:, 0], v[:, 1], v[:, 2]
        area = np.bincount(tri_cfg, weights=0.5 * np.linalg.norm(np.cross(a - c, b - c), axis=1), minlength=128)
        det = np.bincount(tri_cfg, weights=np.einsum("ij,ij->i", np.cross(a, b), c), minlength=128)
        n = np.cross(b - a, c - a)
        normal = np.stack([np.bincount(tri_cfg, weights=n[:, k], minlength=128) for k in range(3)], axis=1)
        if len(_MESH_TABLES) > 64:
            _MESH_TABLES.clear()
        _MESH_TABLES[key] = (area, det, normal)
    return _MESH_TABLES[key]


_TRI_CACHE: list[Any] = []


def _triangle_arrays() -> tuple[np.ndarray, np.ndarray]:
    if not _TRI_CACHE:
        from medimg.features._pyradiomics_tables import EDGE_MIDPOINTS, TRIANGLES

        mid = np.asarray(EDGE_MIDPOINTS, dtype=float)
        rows = [mid[list(t[k:k + 3])] for t in TRIANGLES for k in range(0, len(t), 3)]
        cfgs = [c for c, t in enumerate(TRIANGLES) for _ in range(0, len(t), 3)]
        _TRI_CACHE.extend([np.asarray(rows), np.asarray(cfgs)])
    return _TRI_CACHE[0], _TRI_CACHE[1]


def _line_extremes(twice: np.ndarray, axis: int) -> np.ndarray:
    """Mask of the points (integer coordinates) that are the first or the last on their line
    parallel to ``axis``. A vertex of the convex hull always is: a point strictly between two
    others is never one of the two farthest apart."""
    n = twice.max(0) + 1
    b, c = (d for d in range(3) if d != axis)
    line = twice[:, b] * n[c] + twice[:, c]
    key = line * n[axis] + twice[:, axis]
    order = np.argsort(key, kind="stable")
    line = line[order]
    change = line[1:] != line[:-1]
    ends = np.concatenate(([True], change)) | np.concatenate((change, [True]))
    mask = np.zeros(len(twice), dtype=bool)
    mask[order[ends]] = True
    return mask


#: In-plane directions (b, c) along which the plane diameters' candidates are thinned further when
#: there are many: a point strictly inside a segment of two others is never one of the farthest pair.
_PLANE_DIRECTIONS = ((1, 1), (1, -1), (2, 1), (1, 2), (2, -1), (1, -2))


def _plane_extremes(twice: np.ndarray, cand: np.ndarray, axis: int) -> np.ndarray:
    """The candidates ``cand`` (rows of ``twice``) first or last on their lines, within their plane
    of constant ``axis`` coordinate, along each of :data:`_PLANE_DIRECTIONS`."""
    b, c = (d for d in range(3) if d != axis)
    pts = twice[cand].astype(np.int64)
    span = int(pts.max()) + 1
    keep = np.ones(len(cand), dtype=bool)
    for ub, uc in _PLANE_DIRECTIONS:
        width = 3 * span  # |line| and |pos| < 3 span
        line = pts[:, b] * uc - pts[:, c] * ub + width  # the same for the points of one line
        pos = pts[:, b] * ub + pts[:, c] * uc + width
        group = pts[:, axis] * (2 * width) + line
        order = np.argsort(group * (2 * width) + pos)
        group = group[order]
        change = group[1:] != group[:-1]
        ends = np.concatenate(([True], change)) | np.concatenate((change, [True]))
        mask = np.zeros(len(cand), dtype=bool)
        mask[order[ends]] = True
        keep &= mask
    return cand[keep]


def _max_sq_pairwise(points: np.ndarray) -> float:
    """Largest squared distance between two of a few ``points`` (all pairs)."""
    best = 0.0
    for start in range(0, len(points), 256):
        chunk = points[start:start + 256]
        d = np.sum((chunk[:, None, :] - points[None, :, :]) ** 2, axis=2)
        best = max(best, float(d.max()))
    return best


def _max_sq_within(points: np.ndarray, starts: np.ndarray, sizes: np.ndarray, bounds: np.ndarray,
                   best: float = 0.0) -> float:
    """Largest squared distance between two points of one group (rows ``starts[k]`` to
    ``starts[k] + sizes[k]`` of ``points``), at least ``best``, over the groups whose ``bounds`` (an
    upper bound of their squared diameter) exceed it: largest bound first, every pair of the small
    groups at once (about a million pairs at a time), each large group on its own; groups that can
    no longer beat the best are skipped."""
    order = np.argsort(bounds, kind="stable")[::-1]
    starts, sizes, bounds = starts[order], sizes[order], bounds[order]
    first = 0
    while first < len(starts):
        if bounds[first] <= best:
            break
        if sizes[first] > 256:
            best = _max_sq_cells(points[starts[first]:starts[first] + sizes[first]], best)
            first += 1
            continue
        pairs = sizes[first:].astype(np.int64) ** 2
        ends = np.cumsum(pairs)
        budget = 1_000_000 if first else 1  # the largest plane alone first: a good best to prune with
        last = first + max(1, int(np.searchsorted(ends, budget, side="right")))
        group = slice(first, last)
        keep = (sizes[group] <= 256) & (bounds[group] > best)
        st, n = starts[group][keep], sizes[group][keep]
        pr = n.astype(np.int64) ** 2
        local = np.arange(int(pr.sum())) - np.repeat(np.cumsum(pr) - pr, pr)
        n_rep = np.repeat(n, pr)
        base = np.repeat(st, pr)
        i, j = base + local // n_rep, base + local % n_rep
        d = (points[i, 0] - points[j, 0]) ** 2
        for k in range(1, points.shape[1]):
            d += (points[i, k] - points[j, k]) ** 2
        best = max(best, float(d.max(initial=0.0)))
        for k in np.flatnonzero(~keep & (sizes[group] > 256)):  # large groups in this stretch
            if bounds[first + k] > best:
                best = _max_sq_cells(points[starts[first + k]:starts[first + k] + sizes[first + k]], best)
        first = last
    return best


def _max_sq_cells(points: np.ndarray, best: float = 0.0) -> float:
    """Largest squared distance between two of ``points`` (N, d), at least ``best``, without the
    convex hull: the points are binned on a grid of cells; a pair of cells whose bounding boxes
    cannot hold a pair farther than the best so far is skipped (the bound is computed with the
    distances' own rounded operations, which are monotone, so the maximum is exact); the other pairs
    are compared, the largest bound first, in batches of about 2**18 pairs."""
    n, dims = points.shape
    if n < 2:
        return best
    lo, hi = points.min(0), points.max(0)
    ext = hi - lo
    g = int(min(12, max(2, round((n / 16.0) ** (1.0 / dims)))))
    ncell = np.where(ext > 0, g, 1)
    width = np.where(ext > 0, ext / ncell, 1.0)
    k = np.minimum(((points - lo) / width).astype(np.intp), ncell - 1)
    cell = k[:, 0]
    for a in range(1, dims):
        cell = cell * ncell[a] + k[:, a]
    order = np.argsort(cell, kind="stable")
    pts, cell = points[order], cell[order]
    starts = np.flatnonzero(np.concatenate(([True], cell[1:] != cell[:-1])))
    sizes = np.diff(np.concatenate((starts, [n])))
    bmin = np.minimum.reduceat(pts, starts, axis=0)
    bmax = np.maximum.reduceat(pts, starts, axis=0)
    ub = None
    for a in range(dims):  # the same association as the distances: ((d0^2 + d1^2) + d2^2)
        u = np.maximum(bmax[None, :, a] - bmin[:, None, a], bmax[:, None, a] - bmin[None, :, a])
        ub = u * u if ub is None else ub + u * u
    s_idx, t_idx = np.nonzero(np.triu(ub > best))
    bound = ub[s_idx, t_idx]
    rank = np.argsort(-bound, kind="stable")
    s_idx, t_idx, bound = s_idx[rank], t_idx[rank], bound[rank]
    pos = 0
    while pos < len(bound) and bound[pos] > best:
        count = sizes[s_idx[pos:]].astype(np.int64) * sizes[t_idx[pos:]]
        end = pos + max(1, int(np.searchsorted(np.cumsum(count), 1 << 18, side="right")))
        sel = slice(pos, end)
        keep = bound[sel] > best
        ss, tt = s_idx[sel][keep], t_idx[sel][keep]
        ns, nt = sizes[ss].astype(np.int64), sizes[tt].astype(np.int64)
        pairs = ns * nt
        local = np.arange(int(pairs.sum())) - np.repeat(np.cumsum(pairs) - pairs, pairs)
        nt_rep = np.repeat(nt, pairs)
        i = np.repeat(starts[ss], pairs) + local // nt_rep
        j = np.repeat(starts[tt], pairs) + local % nt_rep
        d = (pts[i, 0] - pts[j, 0]) ** 2
        for a in range(1, dims):
            d += (pts[i, a] - pts[j, a]) ** 2
        best = max(best, float(d.max(initial=0.0)))
        pos = end
    return best


def _max_sq_3d(points: np.ndarray) -> float:
    """Largest squared distance between two of ``points`` (3-D). A pair of extreme points (along the
    axes and the body diagonals) gives a lower bound d0; a point whose farthest bounding-box corner
    is nearer than d0 cannot be an end of the farthest pair (float rounding is monotone, so this
    holds as computed), and is dropped before all pairs (few points) or the cell search (many:
    :func:`_max_sq_cells`)."""
    if len(points) < 2:
        return 0.0
    lo, hi = points.min(0), points.max(0)
    picks = [np.argmin(points, 0), np.argmax(points, 0)]
    for sign in ((1.0, 1.0, 1.0), (1.0, 1.0, -1.0), (1.0, -1.0, 1.0), (-1.0, 1.0, 1.0)):
        proj = points @ np.asarray(sign)
        picks.append(np.asarray([np.argmin(proj), np.argmax(proj)]))
    ends = points[np.unique(np.concatenate(picks))]
    d0 = _max_sq_pairwise(ends)
    reach = np.sum(np.maximum((points - lo) ** 2, (hi - points) ** 2), axis=1)
    far = points[reach >= d0]
    return max(d0, _max_sq_pairwise(far) if len(far) <= 256 else _max_sq_cells(far, d0))


def _diameters(twice: np.ndarray, spacing: np.ndarray) -> tuple[float, float, float, float]:
    """PyRadiomics's maximum diameters (slice, column, row, 3-D): the largest distance between two
    mesh vertices, overall and between vertices of equal z, y or x (``twice``: 2 x voxel coordinates).

    Only the points first or last on their lines parallel to the axes (of the plane) are compared:
    the two farthest apart are among them."""
    pts = twice * (spacing / 2.0)
    ext = [_line_extremes(twice, axis) for axis in range(3)]
    d3 = _max_sq_3d(pts[ext[0] & ext[1] & ext[2]])
    planes = []
    for axis in range(3):
        rest = [d for d in range(3) if d != axis]
        cand = np.flatnonzero(ext[rest[0]] & ext[rest[1]])
        if len(cand) > 2000:
            cand = _plane_extremes(twice, cand, axis)
        cand = cand[np.argsort(twice[cand, axis], kind="stable")]
        level = twice[cand, axis]
        starts = np.flatnonzero(np.concatenate(([True], level[1:] != level[:-1])))
        sizes = np.diff(np.concatenate((starts, [len(cand)])))
        sub = pts[cand][:, rest]
        span = np.maximum.reduceat(sub, starts, axis=0) - np.minimum.reduceat(sub, starts, axis=0)
        bounds = np.sum(span ** 2, axis=1)
        best = 0.0
        if len(starts):
            # Planes of the largest bounding-box diagonal first; those that cannot beat the best skipped.
            many = sizes > 1
            best = _max_sq_within(sub, starts[many], sizes[many], bounds[many])
        planes.append(best)
    return (float(np.sqrt(planes[0])), float(np.sqrt(planes[1])), float(np.sqrt(planes[2])), float(np.sqrt(d3)))


def shape(roi: np.ndarray, spacing: tuple[float, float, float], names: Iterable[str],
          diagnostics: dict[str, float] | None = None) -> dict[str, float]:
    """PyRadiomics 3-D shape features of ``roi`` (cropped to its bounding box; ``spacing`` (z, y, x) mm).

    A negative mesh volume (PyRadiomics's half-table orientation on some configurations) is
    reproduced; ``diagnostics`` then gets the absolute value as the correct one."""
    sp = np.asarray(spacing, dtype=float)
    padded = np.pad(roi, 1)
    names = tuple(names)
    want_diam = any("Diameter" in n for n in names)
    compiled = jit.wanted()
    if compiled:
        from medimg.features import _prad_shape_kernels as kernels

        area, volume, twice = kernels.mesh(padded, sp, _mesh_tables(sp))
        diam = kernels.diameters(twice, sp) if want_diam else (np.nan,) * 4
    else:
        area, volume, twice = _mesh(padded, sp)
        diam = _diameters(twice, sp) if want_diam else (np.nan,) * 4
    if diagnostics is not None and volume < 0:
        diagnostics["shape_MeshVolume.pyradiomics_negative_corrected"] = abs(volume)
    # (N, 3) in Fortran order, as numpy.argwhere gives it: the mean and the covariance then round as
    # PyRadiomics's do (it matters for the axis of a flat ROI, whose eigenvalue is rounding only)
    if compiled:
        coords = kernels.voxel_coords(padded, sp)
    else:
        coords = np.stack(_nonzero(padded)).T.astype(float) * sp
    npix = len(coords)
    center = coords.mean(axis=0)
    rows = coords.T  # the same element-wise operations, along memory (fast for a Fortran-ordered array)
    rows -= center[:, None]
    rows /= np.sqrt(npix)
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

def glcm(q: np.ndarray | Discretised, spacing: tuple[float, float, float], settings: Mapping[str, Any],
         names: Iterable[str]) -> dict[str, float]:
    """PyRadiomics GLCM features of the discretised ROI ``q`` (grey levels >= 1, 0 outside).

    The sums over (i, j) that depend on i + j or |i - j| only go through p_x+y and p_x-y, those of
    i or j only through the marginals: the same values as PyRadiomics's sums over the matrix, to
    rounding. Compiled (:func:`medimg.core.jit.wanted`): the matrices straight from the ROI box and
    the per-angle sums in one pass (``_prad_cooc_kernels``)."""
    from medimg.core import jit

    d = _prepared(q)
    if jit.wanted():
        return _glcm_compiled(d, spacing, settings, names)
    grid, offs, both = d.both_directions(settings)
    levels, ng = d.levels, d.ng
    nl = levels.size
    na = len(offs)
    nb = both[:, :na]
    ok = nb > 0
    rank = np.zeros(ng + 1, dtype=np.intp)
    rank[levels] = np.arange(nl)
    code = (rank[grid.values][:, None] * nl + rank[nb]) * na + np.arange(na)[None, :]
    P = np.bincount(code[ok], minlength=nl * nl * na).reshape(nl, nl, na).astype(float)
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
    na = P.shape[2]
    g = levels.astype(float)
    flatP = P.reshape(nl * nl, na)
    gi = np.repeat(g, nl)
    gj = np.tile(g, nl)
    px = P.sum(1)  # (Ng, Na)
    py = P.sum(0)
    ux = g @ px  # (Na,)
    uy = g @ py
    ksum = np.arange(2, ng * 2 + 1, dtype=float)
    kdiff = np.arange(0, ng, dtype=float)
    add_code = ((gi + gj - 2).astype(np.intp)[:, None] * na + np.arange(na)[None, :]).ravel()
    sub_code = (np.abs(gi - gj).astype(np.intp)[:, None] * na + np.arange(na)[None, :]).ravel()
    pxy_add = np.bincount(add_code, weights=flatP.ravel(), minlength=ksum.size * na).reshape(ksum.size, na)
    pxy_sub = np.bincount(sub_code, weights=flatP.ravel(), minlength=kdiff.size * na).reshape(kdiff.size, na)
    hxy = -np.sum(flatP * np.log2(flatP + _EPS), 0)
    dx = g[:, None] - ux[None, :]  # (Ng, Na)
    dy = g[:, None] - uy[None, :]
    varx = np.sum(px * dx ** 2, 0)
    vary = np.sum(py * dy ** 2, 0)
    kc = ksum[:, None] - (ux + uy)[None, :]  # i + j - ux - uy, per value of i + j
    pxpy = None
    out: dict[str, float] = {}
    for name in names:
        if name == "Autocorrelation":
            v = _nanmean((gi * gj) @ flatP)
        elif name == "JointAverage":
            v = float(ux.mean())
        elif name == "ClusterProminence":
            v = _nanmean(np.sum(pxy_add * kc ** 4, 0))
        elif name == "ClusterShade":
            v = _nanmean(np.sum(pxy_add * kc ** 3, 0))
        elif name == "ClusterTendency":
            v = _nanmean(np.sum(pxy_add * kc ** 2, 0))
        elif name == "Contrast":
            v = _nanmean(np.sum(pxy_sub * (kdiff ** 2)[:, None], 0))
        elif name == "Correlation":
            sig = np.sqrt(varx) * np.sqrt(vary)
            corm = np.sum(dx * np.sum(P * dy[None, :, :], 1), 0)
            corr = corm / (sig + _EPS)
            corr[sig == 0] = 1
            v = _nanmean(corr)
        elif name == "DifferenceAverage":
            v = _nanmean(np.sum(kdiff[:, None] * pxy_sub, 0))
        elif name == "DifferenceEntropy":
            v = _nanmean(-np.sum(pxy_sub * np.log2(pxy_sub + _EPS), 0))
        elif name == "DifferenceVariance":
            davg = np.sum(kdiff[:, None] * pxy_sub, 0, keepdims=True)
            v = _nanmean(np.sum(pxy_sub * (kdiff[:, None] - davg) ** 2, 0))
        elif name == "JointEnergy":
            v = _nanmean(np.sum(flatP ** 2, 0))
        elif name == "JointEntropy":
            v = _nanmean(hxy)
        elif name in ("Imc1", "Imc2"):
            if pxpy is None:
                pxpy = (px[:, None, :] * py[None, :, :]).reshape(nl * nl, na)
                log_pxpy = np.log2(pxpy + _EPS)
            if name == "Imc1":
                hx = -np.sum(px * np.log2(px + _EPS), 0)
                hy = -np.sum(py * np.log2(py + _EPS), 0)
                hxy1 = -np.sum(flatP * log_pxpy, 0)
                div = np.fmax(hx, hy)
                imc1 = hxy - hxy1
                imc1 = np.where(div != 0, imc1 / np.where(div != 0, div, 1), 0.0)
                v = _nanmean(imc1)
            else:
                hxy2 = -np.sum(pxpy * log_pxpy, 0)
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
            v = _nanmean(np.amax(flatP, 0))
        elif name == "SumAverage":
            v = _nanmean(np.sum(ksum[:, None] * pxy_add, 0))
        elif name == "SumEntropy":
            v = _nanmean(-np.sum(pxy_add * np.log2(pxy_add + _EPS), 0))
        elif name == "SumSquares":
            v = _nanmean(varx)
        elif name == "MCC":
            v = _mcc(P, px, py)
        else:  # pragma: no cover
            raise KeyError(name)
        out[name] = float(v)
    return out


def _level_ranks(d: Discretised) -> tuple[np.ndarray, np.ndarray]:
    """The ROI box as int64 (C order) and each grey level's row among the levels present."""
    rank = np.zeros(d.ng + 1, dtype=np.int64)
    rank[d.levels] = np.arange(d.levels.size)
    return np.ascontiguousarray(d.q, dtype=np.int64), rank


def _glcm_compiled(d: Discretised, spacing: tuple[float, float, float], settings: Mapping[str, Any],
                   names: Iterable[str]) -> dict[str, float]:
    """:func:`glcm` with the compiled kernels (the same values to rounding): one kernel call, and
    Python only for the MCC's angles where PyRadiomics's eps matters."""
    from medimg.features import _prad_cooc_kernels as K

    distances = tuple(int(v) for v in settings.get("distances", [1]))
    offs = angles(d.q.shape, distances, force2d=bool(settings.get("force2D", False)),
                  force2d_dim=int(settings.get("force2Ddimension", 0)))
    box, rank = _level_ranks(d)
    symmetrical = bool(settings.get("symmetricalGLCM", True))
    norm = settings.get("weightingNorm")
    weights = _weights(offs, spacing, norm, "glcm") if norm is not None else np.empty(0)
    names = tuple(names)
    means, joint, mcc, state, P, px, py, lam, bound, third = K.kernel(K.glcm_all)(
        box, offs.astype(np.int64), rank, d.levels.astype(float), d.ng, symmetrical, weights, "MCC" in names)
    if state == 1:
        mcc = _mcc_exact(P, px, py, lam, bound, third)
    means = means.tolist()
    out: dict[str, float] = {}
    for name in names:
        if name == "MCC":
            out[name] = float(mcc)
        elif name == "JointAverage":
            out[name] = float(joint)
        else:
            out[name] = means[K.GLCM_INDEX[name]]
    return out


def _mcc_exact(P: np.ndarray, px: np.ndarray, py: np.ndarray, lam: np.ndarray, bound: np.ndarray,
               third: np.ndarray) -> float:
    """:func:`_mcc` from the compiled parts (``_prad_cooc_kernels.mcc_parts``) where PyRadiomics's eps
    matters on some angle: Q's eigenvalue by inverse iteration when Bauer-Fike isolates it, else
    NumPy's general eigensolver."""
    from medimg.features import _prad_cooc_kernels as K

    exact = ~((lam > 0) & (bound <= 1e-8 * lam))
    values = np.sqrt(np.clip(lam, 0, None)).astype(complex)
    rest = []
    for a in np.flatnonzero(exact):
        # Bauer-Fike: Q's eigenvalues lie within ||G||_F of S's (module notes of _mcc). Where S's
        # second eigenvalue's disc is apart from the others' (S's largest is 1), it holds exactly one of
        # Q's, real and second by real part (NumPy's sort): found by inverse iteration on Q.
        # (Not for a small eigenvalue: both solvers are accurate to about 1e-16 absolute only.)
        mu, beta = lam[a], bound[a] / 3.0
        margin = 2.5 * beta + 1e-12
        if mu > max(margin, 1e-3) and 1.0 - mu > margin and mu - third[a] > margin:
            if np.count_nonzero(px[a]) >= _MCC_LAPACK_LEVELS:
                rho = _mcc_refine_lapack(P[a], px[a], py[a], mu)
            else:
                rho = K.kernel(K.mcc_refine)(P[a], px[a], py[a], mu)
            if np.isfinite(rho) and abs(rho - mu) <= 1.01 * beta + 1e-13:
                values[a] = np.sqrt(rho)
                continue
        rest.append(a)
    if rest:
        pa = P[rest]
        q = (pa / (px[rest][:, :, None] * py[rest][:, None, :] + _EPS)) @ pa.transpose(0, 2, 1)
        ev = np.linalg.eigvals(q)
        ev.sort()
        values[rest] = np.sqrt(ev[:, -2])
    return float(np.nanmean(values).real)


#: From this many grey levels in use, :func:`_mcc_refine_lapack` (BLAS/LAPACK) instead of the compiled loops.
_MCC_LAPACK_LEVELS = 64


def _mcc_refine_lapack(P: np.ndarray, px: np.ndarray, py: np.ndarray, mu: float) -> float:
    """``_prad_cooc_kernels.mcc_refine`` (the same steps and stopping rule) with Q formed by one matrix
    product and Q - mu I factorised by LAPACK (dgetrf/dgetrs): about twice as fast from ~100 grey
    levels (filtered images). An exactly singular Q - mu I goes to the compiled loops (their
    pivot rule)."""
    from scipy.linalg.lapack import dgetrf, dgetrs

    from medimg.features import _prad_cooc_kernels as K

    used = np.flatnonzero(px > 0)
    n = used.size
    if n == 0:
        return float("nan")
    pu = P[used]
    Q = (pu / (px[used, None] * py[None, :] + _EPS)) @ pu.T
    r = np.sqrt(px[used])
    Q *= r[:, None] / r[None, :]
    M = Q.copy()
    M[np.diag_indices(n)] -= mu
    lu, piv, info = dgetrf(M)
    if info != 0:
        return float(K.kernel(K.mcc_refine)(P, px, py, mu))
    x = np.full(n, 1.0 / np.sqrt(n))
    prev = mu
    for it in range(30):
        y, info = dgetrs(lu, piv, x)
        nrm = float(np.sqrt(y @ y))
        if info != 0 or not (0 < nrm < np.inf):
            return float("nan")
        x = y / nrm
        rho = float(x @ (Q @ x))
        if it > 0 and abs(rho - prev) <= 64.0 * _EPS * abs(rho):
            return rho
        prev = rho
    return float("nan")


def _mcc_compiled(P: np.ndarray, symmetric: bool) -> float:
    """:func:`_mcc` of the normalised ``P`` (Na, Nl, Nl), S's eigenvalues and the bounds compiled
    (:func:`_mcc_exact` where PyRadiomics's eps matters)."""
    from medimg.features import _prad_cooc_kernels as K

    if P.shape[1] < 2:
        return 1.0
    if not np.all(np.isfinite(P)):
        return float("nan")
    px = P.sum(2)
    py = P.sum(1)
    lam, bound, third = K.kernel(K.mcc_parts)(P, px, py, symmetric)
    return _mcc_exact(P, px, py, lam, bound, third)


def _mcc(P: np.ndarray, px: np.ndarray, py: np.ndarray) -> float:
    """Square root of the second largest eigenvalue of Q(i, j) = sum_k P(i, k) P(j, k) / (p_x(i) p_y(k) + eps),
    per angle, averaged (PyRadiomics's MCC).

    Q = Q0 + E with Q0 = D_x^-1 P D_y^-1 P^T (no eps) and E = W P^T the eps's share (W = P dw, dw the
    difference 1/(p p + eps) - 1/(p p)). D_x^1/2 Q D_x^-1/2 is the symmetric S = A A^T
    (A = D_x^-1/2 P D_y^-1/2) plus F = D_x^1/2 E D_x^-1/2 = G A^T with G = D_x^1/2 W D_y^1/2; A's largest
    singular value is 1, so ||F|| <= ||G||_F, and (Bauer-Fike, S normal) Q's second largest eigenvalue is
    within 3 ||G||_F of S's. S's (a symmetric eigensolver) is taken where 3 ||G||_F is below 1e-8 of it
    (MCC then within 1e-8 relative); elsewhere Q itself, as PyRadiomics computes it."""
    ng = P.shape[0]
    if ng < 2:
        return 1.0
    if not np.all(np.isfinite(P)):
        return float("nan")
    pa = P.transpose(2, 0, 1)  # (Na, Ng, Ng)
    pxa, pya = px.T, py.T  # (Na, Ng)
    pxpy = pxa[:, :, None] * pya[:, None, :]  # p_x(i) p_y(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_root_x = np.where(pxa > 0, 1.0 / np.sqrt(pxa), 0.0)
        inv_root_y = np.where(pya > 0, 1.0 / np.sqrt(pya), 0.0)
        gw = np.where(pxpy > 0, pa * (-_EPS / (pxpy * (pxpy + _EPS))) * np.sqrt(pxpy), 0.0)  # G
    left = pa * (inv_root_x[:, :, None] * inv_root_y[:, None, :])
    lam = np.linalg.eigvalsh(left @ left.transpose(0, 2, 1))[:, -2]  # S's, per angle
    bound = 3.0 * np.sqrt(np.sum(gw * gw, axis=(1, 2)))
    return _mcc_finish(pa, pxpy, lam, bound)


def _mcc_finish(pa: np.ndarray, pxpy: np.ndarray, lam: np.ndarray, bound: np.ndarray) -> float:
    """MCC from S's eigenvalues ``lam`` and the bounds (see :func:`_mcc`): Q's own eigenvalues for the
    angles where the bound is not small enough."""
    exact = ~((lam > 0) & (bound <= 1e-8 * lam))
    values = np.sqrt(np.clip(lam, 0, None)).astype(complex)
    if exact.any():
        a = pa[exact] / (pxpy[exact] + _EPS)
        ev = np.linalg.eigvals(a @ pa[exact].transpose(0, 2, 1))
        ev.sort()
        values[exact] = np.sqrt(ev[:, -2])
    return float(np.nanmean(values).real)


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

def _glrlm_matrix(q: np.ndarray | Discretised, settings: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    d = _prepared(q)
    shape_ = d.q.shape
    offs = angles(shape_, (1,), force2d=settings.get("force2D", False),
                  force2d_dim=settings.get("force2Ddimension", 0))
    ng = d.ng
    nr = int(max(shape_))
    na = len(offs)
    grid, _, both = d.both_directions({**settings, "distances": [1]})  # the same angles first
    gl = grid.values
    n = gl.size
    nxt = grid.neighbour_ids(offs)  # (N, Na)
    same = both[:, :na] == gl[:, None]  # the neighbour along the angle continues the run
    starts = both[:, na:] != gl[:, None]  # the one against it does not: a run starts here
    # Run length from every voxel to the end of its run, by pointer jumping along the runs (all
    # angles at once): ptr = the voxel (x angle) the count so far reaches, -1 at a run's end.
    ptr = np.where(same, nxt * nxt.dtype.type(na) + np.arange(na, dtype=nxt.dtype)[None, :], -1).ravel()
    cnt = np.ones(n * na, dtype=nxt.dtype)
    active = np.flatnonzero(ptr >= 0)
    while active.size:
        nxt_p = ptr[active]
        cnt[active] += cnt[nxt_p]
        ptr[active] = ptr[nxt_p]
        active = active[ptr[active] >= 0]
    flat = np.flatnonzero(starts)
    rows, a_idx = np.divmod(flat, na)
    length = cnt[flat]
    g = gl[rows]
    P = np.bincount(((g - 1) * nr + (length - 1)) * na + a_idx, minlength=ng * nr * na).reshape(ng, nr, na)
    P = P.astype(float)
    for a in np.flatnonzero(~same.any(0)):
        # Every run of this angle is one voxel long; when no line along it holds two ROI voxels,
        # PyRadiomics drops the angle's counts.
        off = offs[a]
        c = grid.coords
        back = np.full(n, np.iinfo(np.intp).max, dtype=np.intp)
        for dim in range(3):
            if off[dim] > 0:
                back = np.minimum(back, c[:, dim])
            elif off[dim] < 0:
                back = np.minimum(back, shape_[dim] - 1 - c[:, dim])
        line = np.ravel_multi_index(tuple((c - back[:, None] * off[None, :]).T), shape_)
        if np.unique(line).size == line.size:
            P[:, 0, a] = 0
    return P, offs


def glrlm(q: np.ndarray | Discretised, spacing: tuple[float, float, float], settings: Mapping[str, Any],
          names: Iterable[str]) -> dict[str, float]:
    """PyRadiomics GLRLM features of the discretised ROI ``q``. Compiled
    (:func:`medimg.core.jit.wanted`): the runs counted straight from the ROI box and the per-angle sums
    in one pass (``_prad_cooc_kernels``)."""
    from medimg.core import jit

    q = _prepared(q)
    if jit.wanted():
        return _glrlm_compiled(q, spacing, settings, names)
    P, offs = _glrlm_matrix(q, settings)
    levels = q.levels
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


def _glrlm_compiled(d: Discretised, spacing: tuple[float, float, float], settings: Mapping[str, Any],
                    names: Iterable[str]) -> dict[str, float]:
    """:func:`glrlm` with the compiled kernels (the same values to rounding)."""
    from medimg.features import _prad_cooc_kernels as K

    offs = angles(d.q.shape, (1,), force2d=settings.get("force2D", False),
                  force2d_dim=settings.get("force2Ddimension", 0))
    box, rank = _level_ranks(d)
    norm = settings.get("weightingNorm")
    weights = _weights(offs, spacing, norm, "glrlm") if norm is not None else np.empty(0)
    means = K.kernel(K.glrlm_all)(box, offs.astype(np.int64), rank, d.levels.astype(float), int(max(d.q.shape)),
                                  weights).tolist()
    return {name: float(means[K.GLRLM_INDEX[name]]) for name in names}


# ---------------------------------------------------------------------------------------------- GLSZM

def _components(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Connected components of the graph of ``n`` nodes and edges ``u``-``v``: each node's root
    (the smallest node of its component), by hooking roots onto smaller roots and pointer jumping."""
    parent = np.arange(n)
    while u.size:
        ru, rv = parent[u], parent[v]
        differ = ru != rv
        if not differ.any():
            break
        u, v, ru, rv = u[differ], v[differ], ru[differ], rv[differ]
        parent[np.maximum(ru, rv)] = np.minimum(ru, rv)  # roots hook onto smaller roots: a forest
        while True:
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
    return parent


def glszm_matrix(q: np.ndarray | Discretised, settings: Mapping[str, Any]) -> np.ndarray:
    """PyRadiomics's GLSZM (Ng, Ns): zones are connected (26-neighbour in 3-D) same-level voxels."""
    d = _prepared(q)
    grid, offs, both = d.both_directions({**settings, "distances": [1]})
    gl = grid.values
    # one of each opposite pair of neighbours: the edges are undirected
    u, a = np.divmod(np.flatnonzero(both[:, :len(offs)] == gl[:, None]), len(offs))
    root = _components(gl.size, u, grid.neighbour_ids(offs)[u, a])
    sizes = np.bincount(root, minlength=gl.size)
    roots = np.flatnonzero(sizes)
    gls, sizes = gl[roots], sizes[roots]
    P = np.bincount((gls - 1) * int(sizes.max()) + sizes - 1, minlength=d.ng * int(sizes.max()))
    return P.reshape(d.ng, int(sizes.max())).astype(float)


def glszm(q: np.ndarray | Discretised, spacing: tuple[float, float, float], settings: Mapping[str, Any],
          names: Iterable[str]) -> dict[str, float]:
    """PyRadiomics GLSZM features of the discretised ROI ``q``."""
    box = q.q if isinstance(q, Discretised) else q
    if _zone_kernels_wanted(box):
        from medimg.features import _prad_zone_kernels as zk

        return _named(zk.glszm_values(*_zone_args(q, (1,), settings)), zk.ZONE_KEYS, names)
    d = _prepared(q)
    P = glszm_matrix(d, settings)[d.levels - 1]
    return _zone_features(P, d.levels, names, zone=True)


def _zone_kernels_wanted(box: np.ndarray) -> bool:
    """Whether GLSZM/GLDM/NGTDM run their compiled kernels (:mod:`._prad_zone_kernels`) on ``box``."""
    from medimg.core import jit

    return box.ndim == 3 and box.dtype.kind in "iub" and jit.wanted()


def _zone_args(q: np.ndarray | Discretised, distances: Iterable[int], settings: Mapping[str, Any]
               ) -> tuple[Any, np.ndarray]:
    """The box prepared for the compiled zone kernels (:class:`._prad_zone_kernels.ZoneBox`) and
    PyRadiomics's angles for ``distances`` and ``settings`` in both directions; kept on a
    :class:`Discretised` for the next class (one box, bordered for the widest distance so far)."""
    from medimg.features._prad_zone_kernels import ZoneBox

    box_q = q.q if isinstance(q, Discretised) else q
    cache = q._cache if isinstance(q, Discretised) else {}
    key = ("zone", tuple(sorted({int(v) for v in distances})), bool(settings.get("force2D", False)),
           int(settings.get("force2Ddimension", 0)))
    hit = cache.get(key)
    if hit is None:
        moving = [n > 1 for n in box_q.shape]
        if key[2]:
            moving[key[3]] = False
        offs, pad = _zone_offsets(tuple(moving), key[1])
        box = cache.get("zone_box")
        if box is None or box.pad < pad:
            box = cache["zone_box"] = ZoneBox(box_q, pad)
        hit = cache[key] = (box, offs)
    return hit


@functools.lru_cache(maxsize=64)
def _zone_offsets(moving: tuple[bool, ...], distances: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """:func:`angles` in both directions (their order does not matter to the kernels' counts), a
    distance 0 dropped (no neighbour), read-only; and the border they need (>= 1)."""
    offs = _angles(moving, distances, True)
    offs = offs[np.abs(offs).max(1) > 0] if offs.size else offs.copy()
    offs.flags.writeable = False
    return offs, max(int(np.abs(offs).max()) if offs.size else 0, 1)


@functools.lru_cache(maxsize=256)
def _places(keys: tuple[str, ...], names: tuple[str, ...], gldm: bool) -> np.ndarray:
    where = {k: i for i, k in enumerate(keys)}
    alias = _GLDM_ALIAS if gldm else {}
    return np.asarray([where[alias.get(name, name)] for name in names], dtype=np.intp)


def _named(values: np.ndarray, keys: tuple[str, ...], names: Iterable[str], *, gldm: bool = False
           ) -> dict[str, float]:
    """``{name: value}`` for ``names``, each value at its key's place in ``keys`` (a GLDM name at
    the place of its GLSZM twin, :data:`_GLDM_ALIAS`)."""
    names = tuple(names)
    return dict(zip(names, values[_places(keys, names, gldm)].tolist(), strict=True))


#: GLDM feature -> the GLSZM feature of the same sums over the dependence matrix (:func:`_zone_features`).
_GLDM_ALIAS = {
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
    alias = {} if zone else _GLDM_ALIAS
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

def gldm(q: np.ndarray | Discretised, spacing: tuple[float, float, float], settings: Mapping[str, Any],
         names: Iterable[str]) -> dict[str, float]:
    """PyRadiomics GLDM features of ``q`` (dependence: the voxel itself and every neighbour within
    ``gldm_a`` grey levels)."""
    box = q.q if isinstance(q, Discretised) else q
    alpha = settings.get("gldm_a", 0)
    if _zone_kernels_wanted(box):
        from medimg.features import _prad_zone_kernels as zk

        box, offs = _zone_args(q, settings.get("distances", [1]), settings)
        return _named(zk.gldm_values(box, offs, alpha), zk.ZONE_KEYS, names, gldm=True)
    d = _prepared(q)
    grid, _, nb = d.both_directions(settings)
    levels, ng = d.levels, d.ng
    if alpha == 0:
        dep = np.count_nonzero(nb == grid.values[:, None], axis=1)
    else:
        dep = np.count_nonzero((nb > 0) & (np.abs(grid.values[:, None] - nb) <= alpha), axis=1)
    width = nb.shape[1] + 1
    P = np.bincount((grid.values - 1) * width + dep, minlength=ng * width).reshape(ng, width).astype(float)
    return _zone_features(P[levels - 1], levels, names, zone=False)


def ngtdm(q: np.ndarray | Discretised, spacing: tuple[float, float, float], settings: Mapping[str, Any],
          names: Iterable[str]) -> dict[str, float]:
    """PyRadiomics NGTDM features of ``q`` (a voxel without neighbours counts with s = 0)."""
    box = q.q if isinstance(q, Discretised) else q
    if _zone_kernels_wanted(box):
        from medimg.features import _prad_zone_kernels as zk

        box, offs = _zone_args(q, settings.get("distances", [1]), settings)
        # the pass is shared with the GLDM (its alpha: one pass serves both classes)
        return _named(zk.ngtdm_values(box, offs, settings.get("gldm_a", 0)), zk.NGTDM_KEYS, names)
    grid, _, nb = _prepared(q).both_directions(settings)
    count = np.count_nonzero(nb, axis=1)  # neighbours in the ROI (0 outside)
    total = nb.sum(1).astype(float)
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
