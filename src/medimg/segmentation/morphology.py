"""Label-map clean-up: connected components, largest component, small-object removal, holes,
and binary opening / closing / dilation / erosion with a ball of a radius in mm.

All functions treat every non-zero voxel of ``label`` as foreground and return a new label map on
``label``'s grid. Sizes are physical: volumes in mm^3 from the image spacing (areas in mm^2 for a
2-D image), so the same parameter means the same thing at any resolution.

Connectivity is given as the number of neighbours of a voxel in 3-D: ``6`` (shared faces),
``18`` (faces and edges) or ``26`` (faces, edges and corners). For a 2-D image ``4`` and ``6``
mean shared edges and ``8``, ``18`` and ``26`` mean edges and corners.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.core.types import NonNegative
from medimg.errors import ParameterError

__all__ = [
    "Connectivity",
    "connected_components",
    "largest_component",
    "remove_small",
    "fill_holes",
    "ball",
    "dilate",
    "erode",
    "opening",
    "closing",
]

#: Neighbours counted as connected: 6 / 18 / 26 in 3-D (4 / 8 in 2-D).
Connectivity = Literal[4, 6, 8, 18, 26]

_RANK_3D = {6: 1, 18: 2, 26: 3}
_RANK_2D = {4: 1, 6: 1, 8: 2, 18: 2, 26: 2}

_segmentation = registry("segmentation")


# ---------------------------------------------------------------------- shared helpers
def _check_scalar(image: Image, name: str) -> None:
    """Raise :class:`ParameterError` unless ``image`` has one component per voxel."""
    if not isinstance(image, Image):
        msg = f"{name} must be a medimg.Image, got {type(image).__name__}"
        raise ParameterError(msg)
    if image.channel_axis is not None:
        msg = (
            f"{name} must be a scalar image, got {image.n_channels} channels per voxel; "
            "select one channel first"
        )
        raise ParameterError(msg)


def _foreground(label: Image, name: str = "label") -> np.ndarray:
    """Boolean array of the non-zero voxels of a label map (integer-valued arrays only)."""
    _check_scalar(label, name)
    array = label.array
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all() or not np.array_equal(array, np.round(array)):
            msg = (
                f"{name} must be a label map (integer values), got {array.dtype} with "
                "non-integer or non-finite values; threshold it first"
            )
            raise ParameterError(msg)
    elif array.dtype.kind not in "iub":
        msg = f"{name} must be a label map of integer or boolean dtype, got {array.dtype}"
        raise ParameterError(msg)
    return array != 0


def _region(image: Image, mask: Image | None) -> np.ndarray | None:
    """The boolean region of interest ``mask != 0`` after checking it shares ``image``'s grid."""
    if mask is None:
        return None
    _check_scalar(mask, "mask")
    image.check_same_grid(mask, names=("image", "mask"))
    return _foreground(mask, "mask")


def _label_output(reference: Image, array: np.ndarray, step: dict[str, Any]) -> Image:
    """A label map on ``reference``'s grid; ``meta['history']`` gains ``step``."""
    history = list(reference.meta.get("history", []))
    history.append(step)
    return reference.with_array(array, meta={"history": history})


def _structure(ndim: int, connectivity: int) -> np.ndarray:
    from scipy import ndimage as ndi

    table = _RANK_3D if ndim == 3 else _RANK_2D
    if connectivity not in table:
        valid = "6, 18 or 26" if ndim == 3 else "4 or 8 (6 means 4; 18 and 26 mean 8)"
        msg = f"connectivity must be {valid} for a {ndim}-D image, got {connectivity!r}"
        raise ParameterError(msg)
    return ndi.generate_binary_structure(ndim, table[connectivity])


def _smallest_uint(n: int) -> type[np.unsignedinteger]:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def _components(fg: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Components numbered 1..N by decreasing voxel count (ties: scan order); their counts."""
    from scipy import ndimage as ndi

    labelled, n = ndi.label(fg, structure=_structure(fg.ndim, connectivity))
    if n == 0:
        return np.zeros(fg.shape, dtype=np.uint8), np.zeros(0, dtype=np.int64)
    counts = np.bincount(labelled.ravel(), minlength=n + 1)[1:]
    order = np.argsort(-counts, kind="stable")  # old label - 1, largest first
    new_of_old = np.zeros(n + 1, dtype=_smallest_uint(n))
    new_of_old[order + 1] = np.arange(1, n + 1)
    return new_of_old[labelled], counts[order]


# ---------------------------------------------------------------------- operations
def connected_components(
    label: Image, *, connectivity: Connectivity = 26, mask: Image | None = None
) -> tuple[Image, np.ndarray]:
    """Number the connected components of a label map's foreground, largest first.

    Parameters
    ----------
    label
        Label map; every non-zero voxel is foreground.
    connectivity
        6, 18 or 26 neighbours in 3-D (4 or 8 in 2-D); see the module notes.
    mask
        Optional region of interest on the same grid; foreground outside it is ignored.

    Returns
    -------
    components : Image
        Components numbered 1..N in order of decreasing volume (ties broken by the first voxel in
        (z, y, x) scan order), 0 for background; dtype ``uint8`` when N <= 255, else the smallest
        unsigned type that holds N.
    volumes_mm3 : numpy.ndarray
        float64 array of length N: ``volumes_mm3[k - 1]`` is the volume of component ``k`` in
        mm^3 (mm^2 for a 2-D image), so it is sorted in decreasing order.

    Raises
    ------
    ParameterError
        ``label`` is not a scalar integer-valued label map, or ``connectivity`` is invalid.
    GeometryMismatchError
        ``mask`` is not on ``label``'s grid.
    """
    fg = _foreground(label)
    roi = _region(label, mask)
    if roi is not None:
        fg = fg & roi
    components, counts = _components(fg, connectivity)
    volumes = counts.astype(np.float64) * label.voxel_volume_mm3
    step = {
        "op": "segmentation.connected_components",
        "connectivity": connectivity,
        "n_components": int(counts.size),
    }
    return _label_output(label, components, step), volumes


@_segmentation.register("largest_component", tags=("morphology",))
def largest_component(
    label: Image, *, connectivity: Connectivity = 26, mask: Image | None = None
) -> Image:
    """Keep only the largest connected component of a label map's foreground.

    Parameters
    ----------
    label
        Label map; every non-zero voxel is foreground.
    connectivity
        6, 18 or 26 neighbours in 3-D (4 or 8 in 2-D).
    mask
        Optional region of interest on the same grid; foreground outside it is dropped first.

    Returns
    -------
    Image
        ``uint8`` label map: 1 on the largest component (the first in scan order if several
        have the same volume), 0 elsewhere; all zeros when there is no foreground.
    """
    fg = _foreground(label)
    roi = _region(label, mask)
    if roi is not None:
        fg = fg & roi
    components, counts = _components(fg, connectivity)
    out = (components == 1).astype(np.uint8)
    step = {
        "op": "segmentation.largest_component",
        "connectivity": connectivity,
        "volume_mm3": float(counts[0]) * label.voxel_volume_mm3 if counts.size else 0.0,
    }
    return _label_output(label, out, step)


@_segmentation.register("remove_small", tags=("morphology",))
def remove_small(
    label: Image,
    *,
    min_volume_mm3: NonNegative,
    connectivity: Connectivity = 26,
    mask: Image | None = None,
) -> Image:
    """Remove connected components smaller than ``min_volume_mm3``.

    Parameters
    ----------
    label
        Label map; every non-zero voxel is foreground.
    min_volume_mm3
        Smallest volume kept, in mm^3 (mm^2 for a 2-D image). A component of exactly this
        volume is kept. Must be >= 0.
    connectivity
        6, 18 or 26 neighbours in 3-D (4 or 8 in 2-D).
    mask
        Optional region of interest on the same grid; foreground outside it is dropped first.

    Returns
    -------
    Image
        ``uint8`` label map: 1 on the kept components, 0 elsewhere.
    """
    if not np.isfinite(min_volume_mm3) or min_volume_mm3 < 0:
        msg = f"min_volume_mm3 must be a finite volume >= 0 (mm^3), got {min_volume_mm3!r}"
        raise ParameterError(msg)
    fg = _foreground(label)
    roi = _region(label, mask)
    if roi is not None:
        fg = fg & roi
    components, counts = _components(fg, connectivity)
    volumes = counts * label.voxel_volume_mm3
    # A relative tolerance keeps a component of exactly the limit despite rounding.
    keep = np.concatenate([[False], volumes >= min_volume_mm3 * (1 - 1e-12)])
    out = keep[components].astype(np.uint8)
    step = {
        "op": "segmentation.remove_small",
        "min_volume_mm3": float(min_volume_mm3),
        "connectivity": connectivity,
        "removed": int((~keep[1:]).sum()),
    }
    return _label_output(label, out, step)


@_segmentation.register("fill_holes", tags=("morphology",))
def fill_holes(label: Image, *, slice_wise: bool = False, mask: Image | None = None) -> Image:
    """Fill the holes of a label map's foreground.

    A hole is a background region not connected (through shared faces, or edges in 2-D) to the
    array border.

    Parameters
    ----------
    label
        Label map; every non-zero voxel is foreground.
    slice_wise
        Fill each axial slice (array axis 0) in 2-D instead of the volume in 3-D. Use it for
        structures that are open at the top and bottom of the volume (airways, vessels cut by
        the field of view), whose cross-sections still have holes.
    mask
        Optional region of interest on the same grid; the result is 0 outside it.

    Returns
    -------
    Image
        ``uint8`` label map: 1 on the foreground and its holes, 0 elsewhere.
    """
    from scipy import ndimage as ndi

    fg = _foreground(label)
    roi = _region(label, mask)
    if roi is not None:
        fg = fg & roi
    if slice_wise and fg.ndim == 3:
        filled = np.stack([ndi.binary_fill_holes(plane) for plane in fg])
    else:
        filled = ndi.binary_fill_holes(fg)
    if roi is not None:
        filled &= roi
    step = {"op": "segmentation.fill_holes", "slice_wise": bool(slice_wise)}
    return _label_output(label, filled.astype(np.uint8), step)


# ---------------------------------------------------------------------- morphology in mm
def ball(radius_mm: float, spacing_mm: tuple[float, ...]) -> np.ndarray:
    """Boolean structuring element of the voxels whose centres lie within ``radius_mm`` of the
    centre voxel, on a grid of ``spacing_mm`` (array order). An ellipsoid in voxels when the
    spacing is anisotropic; a single voxel when ``radius_mm`` is smaller than every spacing."""
    if not np.isfinite(radius_mm) or radius_mm < 0:
        raise ParameterError(f"radius_mm must be a finite distance >= 0 (mm), got {radius_mm!r}")
    half = [int(np.floor(radius_mm / s + 1e-9)) for s in spacing_mm]
    grids = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing_mm, strict=True)],
                        indexing="ij")
    dist2 = sum(g * g for g in grids)
    return dist2 <= radius_mm * radius_mm * (1 + 1e-9)


def _bbox(fg: np.ndarray) -> list[tuple[int, int]]:
    out = []
    for k in range(fg.ndim):
        nz = np.flatnonzero(np.any(fg, axis=tuple(a for a in range(fg.ndim) if a != k)))
        out.append((int(nz[0]), int(nz[-1]) + 1))
    return out


def _morph(label: Image, radius_mm: float, mask: Image | None, op: str) -> Image:
    """Dilation / erosion / opening / closing of the foreground by a ball, on its bounding box.

    Outside the image never changes the result: it counts as background for dilation and as
    foreground for erosion (scikit-image's ``mode="ignore"``).
    """
    from scipy import ndimage as ndi

    fg = _foreground(label)
    roi = _region(label, mask)
    if roi is not None:
        fg = fg & roi
    spacing = tuple(float(v) for v in np.asarray(label.spacing[: label.spatial_ndim])[::-1])
    structure = ball(radius_mm, spacing)
    out = fg.copy()
    if fg.any() and structure.size > 1:
        # Working on the bounding box grown by twice the radius is exact: voxels farther than
        # that from the foreground are background before and after.
        margin = np.asarray(structure.shape) // 2
        box = tuple(slice(max(0, lo - 2 * m), min(n, hi + 2 * m))
                    for (lo, hi), m, n in zip(_bbox(fg), margin, fg.shape, strict=True))
        block = fg[box]
        if op == "dilate":
            res = ndi.binary_dilation(block, structure)
        elif op == "erode":
            res = ndi.binary_erosion(block, structure, border_value=1)
        elif op == "opening":
            res = ndi.binary_dilation(ndi.binary_erosion(block, structure, border_value=1), structure)
        else:
            res = ndi.binary_erosion(ndi.binary_dilation(block, structure), structure, border_value=1)
        out[box] = res
    if roi is not None:
        out &= roi
    step = {"op": f"segmentation.{op}", "radius_mm": float(radius_mm),
            "structure_voxels": list(structure.shape)}
    return _label_output(label, out.astype(np.uint8), step)


@_segmentation.register("dilate", tags=("morphology",))
def dilate(label: Image, *, radius_mm: NonNegative, mask: Image | None = None) -> Image:
    """Binary dilation by a ball of ``radius_mm`` (mm; ellipsoidal in voxels when the spacing is
    anisotropic, see :func:`ball`). Returns a ``uint8`` label map, 0 outside ``mask``."""
    return _morph(label, radius_mm, mask, "dilate")


@_segmentation.register("erode", tags=("morphology",))
def erode(label: Image, *, radius_mm: NonNegative, mask: Image | None = None) -> Image:
    """Binary erosion by a ball of ``radius_mm`` (mm). The array border does not erode (outside
    the image counts as foreground). Returns a ``uint8`` label map, 0 outside ``mask``."""
    return _morph(label, radius_mm, mask, "erode")


@_segmentation.register("opening", tags=("morphology",))
def opening(label: Image, *, radius_mm: NonNegative, mask: Image | None = None) -> Image:
    """Binary opening (erosion then dilation) by a ball of ``radius_mm`` (mm): removes parts
    thinner than about ``2 * radius_mm`` and smooths convex corners.

    Parameters
    ----------
    label
        Label map; every non-zero voxel is foreground.
    radius_mm
        Ball radius in mm (per axis ``radius_mm / spacing`` voxels, rounded down).
    mask
        Optional region of interest: foreground outside it is dropped first; the result is 0
        outside it.

    Returns
    -------
    Image
        ``uint8`` label map on ``label``'s grid. The array border does not erode.
    """
    return _morph(label, radius_mm, mask, "opening")


@_segmentation.register("closing", tags=("morphology",))
def closing(label: Image, *, radius_mm: NonNegative, mask: Image | None = None) -> Image:
    """Binary closing (dilation then erosion) by a ball of ``radius_mm`` (mm): fills gaps and
    concavities narrower than about ``2 * radius_mm``.

    Parameters
    ----------
    label
        Label map; every non-zero voxel is foreground.
    radius_mm
        Ball radius in mm.
    mask
        Optional region of interest: foreground outside it is dropped first; the result is 0
        outside it.

    Returns
    -------
    Image
        ``uint8`` label map on ``label``'s grid. Objects touching the array border are closed
        as if the image continued with background beyond it.
    """
    return _morph(label, radius_mm, mask, "closing")
