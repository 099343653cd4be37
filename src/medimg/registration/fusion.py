"""Fusion views of two images for reports: checkerboard, alpha blend, difference, colour fusion.

A view is one slice (axial, coronal or sagittal) of image ``a`` with image ``b`` on the same
grid (``b`` is resampled onto ``a``'s grid by the package resampler,
:func:`medimg.core.resample.resample_like`, when the grids differ, optionally through a
registration :class:`~medimg.registration.transform.Transform` that maps ``a`` points to ``b``
points). Both are first reoriented (axis permutations and flips only) to LPS, so that views
look the same whatever the scanner's storage order: axial with anterior up and the patient's
right on the left of the picture (radiological convention), coronal and sagittal with
superior up. Pixels are square in millimetres (physical aspect ratio): the slice is resized
so that one pixel is ``pixel_mm`` (default the finest in-plane spacing).

Modes
    ``checkerboard``: squares of ``checker_mm`` mm alternate between ``a`` and ``b`` (grey);
    ``blend``: ``(1 - alpha) a + alpha b`` (grey, each in its window);
    ``difference``: ``a - b`` in the images' units, mid grey = 0, black/white at
    ``-/+ diff_window`` (default the 99th percentile of ``|a - b|`` in the slice);
    ``colour``: ``a`` grey (e.g. CT in a HU window) with ``b`` in the *hot* colour map
    (e.g. PET in an SUV window, default 0-5 g/ml when ``b`` is SUV), blended with ``alpha``
    where ``b`` is above its window's lower end.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from medimg.core.image import Image
from medimg.errors import GeometryMismatchError, ParameterError, UnknownNameError

if TYPE_CHECKING:
    from medimg.core.provenance import Manifest
    from medimg.registration.transform import Transform

__all__ = ["FUSION_MODES", "VIEW_AXES", "fusion_view", "write_fusion_png", "hot_colormap"]

FusionMode = Literal["checkerboard", "blend", "difference", "colour"]
FUSION_MODES = ("checkerboard", "blend", "difference", "colour")
VIEW_AXES = ("axial", "coronal", "sagittal")
_ALIASES = {"color": "colour", "diff": "difference", "alpha": "blend", "checker": "checkerboard"}

#: Default SUV window (g/ml) of the colour mode when ``b`` holds SUV.
SUV_WINDOW = (0.0, 5.0)


def hot_colormap(values: np.ndarray) -> np.ndarray:
    """The *hot* colour map (black - red - yellow - white, as matplotlib's ``hot``) of values
    in [0, 1]: float RGB in [0, 1], shape ``values.shape + (3,)``."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    r = np.clip(v / 0.365079, 0.0, 1.0)
    g = np.clip((v - 0.365079) / (0.746032 - 0.365079), 0.0, 1.0)
    b = np.clip((v - 0.746032) / (1.0 - 0.746032), 0.0, 1.0)
    return np.stack([r, g, b], axis=-1)


def _window(values: np.ndarray, window: tuple[float, float] | None, reference: np.ndarray) -> np.ndarray:
    """Values scaled to [0, 1] by ``window`` (lo, hi); default the 0.5-99.5 percentiles of
    ``reference``'s finite values."""
    if window is None:
        finite = reference[np.isfinite(reference)]
        lo, hi = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
    else:
        lo, hi = (float(w) for w in window)
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        if window is not None:
            raise ParameterError(f"window must be (low, high) with low < high, got {window!r}")
        hi = lo + 1.0
    return np.clip((np.nan_to_num(values, nan=lo) - lo) / (hi - lo), 0.0, 1.0)


def _check_window(window: Any, name: str) -> tuple[float, float] | None:
    if window is None:
        return None
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"{name} must be two numbers (low, high), got {window!r}") from err
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ParameterError(f"{name} must be (low, high) with low < high, got {window!r}")
    return lo, hi


def _scalar(image: Image, name: str) -> Image:
    if image.channel_axis is not None:
        raise ParameterError(f"{name} must be a scalar image (one value per voxel), got {image.n_channels} channels")
    return image


def _is_suv(image: Image) -> bool:
    units = str(image.meta.get("units", "")).lower()
    return "suv" in image.meta or units in ("g/ml", "suv")


def _slice(array: np.ndarray, spacing: tuple[float, ...], axis: str, index: int) -> tuple[np.ndarray, float, float]:
    """2-D view of an LPS-ordered (z, y, x) array: the plane, row spacing and column spacing (mm)."""
    sx, sy, sz = spacing
    if axis == "axial":  # rows y (anterior up), columns x (patient's right on the left)
        return array[index], sy, sx
    if axis == "coronal":  # rows z (superior up), columns x
        return array[::-1, index, :], sz, sx
    return array[::-1, :, index], sz, sy  # sagittal: rows z (superior up), columns y (anterior left)


def _axis_length(shape: tuple[int, ...], axis: str) -> int:
    return {"axial": shape[0], "coronal": shape[1], "sagittal": shape[2]}[axis]


def fusion_view(a: Image, b: Image, *, mode: FusionMode = "checkerboard",
                axis: Literal["axial", "coronal", "sagittal"] = "axial", index: int | None = None,
                transform: Transform | None = None, alpha: float = 0.5, checker_mm: float = 20.0,
                window_a: tuple[float, float] | None = None, window_b: tuple[float, float] | None = None,
                diff_window: float | None = None, pixel_mm: float | None = None) -> np.ndarray:
    """One fused slice of ``a`` and ``b`` as an RGB uint8 array (rows, columns, 3).

    ``b`` is resampled onto ``a``'s grid (linear; nearest for label maps) when the grids
    differ or a ``transform`` (``a`` points -> ``b`` points, LPS mm) is given. ``axis``: the
    view plane; ``index``: the slice along it in ``a`` reoriented to LPS (default the middle).
    ``alpha``: weight of ``b`` in ``blend`` and ``colour``; ``checker_mm``: side of the
    checkerboard squares (mm); ``window_a``/``window_b``: (low, high) in each image's units
    (default the 0.5-99.5 percentiles of the volume; for ``colour`` and an SUV ``b``,
    0-5 g/ml); ``diff_window``: the ``|a - b|`` shown as black/white in ``difference``;
    ``pixel_mm``: output pixel size (mm, default the finest in-plane spacing).
    See the module docstring for the modes.
    """
    from medimg.core.orient import reorient
    from medimg.core.resample import resample_like

    mode = _ALIASES.get(mode, mode)  # type: ignore[assignment]
    if mode not in FUSION_MODES:
        raise UnknownNameError("fusion mode", mode, FUSION_MODES)
    if axis not in VIEW_AXES:
        raise UnknownNameError("view axis", axis, VIEW_AXES)
    _scalar(a, "image A")
    _scalar(b, "image B")
    if a.spatial_ndim != b.spatial_ndim:
        msg = (f"image A is {a.spatial_ndim}-D but image B is {b.spatial_ndim}-D: fusion needs two "
               "images of the same dimension")
        raise GeometryMismatchError(msg)
    if not 0.0 <= alpha <= 1.0:
        raise ParameterError(f"alpha must be in [0, 1], got {alpha}")
    if not checker_mm > 0:
        raise ParameterError(f"checker_mm must be > 0 mm, got {checker_mm}")
    if pixel_mm is not None and not pixel_mm > 0:
        raise ParameterError(f"pixel_mm must be > 0 mm, got {pixel_mm}")
    if diff_window is not None and not diff_window > 0:
        raise ParameterError(f"diff_window must be > 0, got {diff_window}")
    window_a = _check_window(window_a, "window_a")
    window_b = _check_window(window_b, "window_b")
    if a.spatial_ndim == 3:
        a = reorient(a, "LPS")
    if transform is not None or not b.same_grid(a):
        _check_overlap(b, a, transform)
        b = resample_like(b, a, transform=transform)
    arr_a = np.asarray(a.array, dtype=np.float64)
    arr_b = np.asarray(b.array, dtype=np.float64)
    if a.spatial_ndim == 2:
        arr_a, arr_b = arr_a[None], arr_b[None]
        axis = "axial"
    n = _axis_length(arr_a.shape, axis)
    k = n // 2 if index is None else int(index)
    if not 0 <= k < n:
        raise ParameterError(f"index {index} is outside the {axis} slices 0..{n - 1}")
    spacing = tuple(a.spacing) if a.spatial_ndim == 3 else (*a.spacing[:2], 1.0)
    sa, row_mm, col_mm = _slice(arr_a, spacing, axis, k)
    sb, _r, _c = _slice(arr_b, spacing, axis, k)
    if mode == "colour" and window_b is None and _is_suv(b):
        window_b = SUV_WINDOW
    ga = _window(sa, window_a, arr_a)
    gb = _window(sb, window_b, arr_b)
    if mode == "checkerboard":
        rows = (np.arange(sa.shape[0]) * row_mm // checker_mm).astype(int)
        cols = (np.arange(sa.shape[1]) * col_mm // checker_mm).astype(int)
        use_b = (rows[:, None] + cols[None, :]) % 2 == 1
        rgb = np.repeat(np.where(use_b, gb, ga)[..., None], 3, axis=-1)
    elif mode == "blend":
        rgb = np.repeat(((1 - alpha) * ga + alpha * gb)[..., None], 3, axis=-1)
    elif mode == "difference":
        diff = sa - sb
        scale = diff_window
        if scale is None:
            finite = np.abs(diff[np.isfinite(diff)])
            scale = float(np.percentile(finite, 99)) if finite.size else 1.0
            scale = scale if scale > 0 else 1.0
        rgb = np.repeat(np.clip(0.5 + 0.5 * np.nan_to_num(diff) / scale, 0, 1)[..., None], 3, axis=-1)
    else:  # colour
        hot = hot_colormap(gb)
        weight = alpha * (gb > 0)[..., None]
        rgb = (1 - weight) * ga[..., None] + weight * hot
    out = np.round(rgb * 255).astype(np.uint8)
    return _physical_aspect(out, row_mm, col_mm, pixel_mm)


def _check_overlap(b: Image, a: Image, transform: Transform | None) -> None:
    """Refuse a fusion where no voxel of ``a``'s grid falls inside ``b`` (nothing to fuse)."""
    from medimg.core.resample import resample_like

    inside = Image(np.ones(b.spatial_shape, dtype=np.uint8), b.affine)
    if not resample_like(inside, a, transform=transform, interpolator="nearest").array.any():
        msg = (f"image B ({b.grid_summary()}) does not overlap image A ({a.grid_summary()})"
               f"{' through the transform' if transform is not None else ''}: nothing to fuse")
        raise GeometryMismatchError(msg)


def _physical_aspect(rgb: np.ndarray, row_mm: float, col_mm: float, pixel_mm: float | None) -> np.ndarray:
    """Resize (bilinear) so that one pixel is ``pixel_mm`` in both directions."""
    from PIL import Image as PILImage

    px = min(row_mm, col_mm) if pixel_mm is None else float(pixel_mm)
    height = max(1, int(round(rgb.shape[0] * row_mm / px)))
    width = max(1, int(round(rgb.shape[1] * col_mm / px)))
    if (height, width) == rgb.shape[:2]:
        return rgb
    if height * width > 64_000_000:
        raise ParameterError(f"pixel_mm={px} gives a {width} x {height} picture; choose a larger pixel_mm")
    pil = PILImage.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    return np.asarray(pil.resize((width, height), resample=PILImage.Resampling.BILINEAR))


def write_fusion_png(a: Image, b: Image, path: str | Path, *, provenance: Manifest | None = None,
                     **options: Any) -> Path:
    """Write :func:`fusion_view` of ``a`` and ``b`` as an RGB PNG (atomically, with its JSON
    provenance sidecar); ``options`` go to :func:`fusion_view`. Returns ``path``."""
    from medimg import io

    rgb = fusion_view(a, b, **options)
    px = options.get("pixel_mm")
    view = Image.from_geometry(rgb, spacing=(px or 1.0, px or 1.0), channel_axis=-1,
                               has_patient_geometry=False,
                               meta={"fusion": {k: v for k, v in options.items() if k != "transform"}})
    return io.write(view, path, provenance=provenance)
