"""Label-map clean-up: connected components, largest component, small-object removal, holes.

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
from medimg.errors import ParameterError

__all__ = [
    "Connectivity",
    "connected_components",
    "largest_component",
    "remove_small",
    "fill_holes",
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


@_segmentation.register("largest_component")
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


@_segmentation.register("remove_small")
def remove_small(
    label: Image,
    *,
    min_volume_mm3: float,
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


@_segmentation.register("fill_holes")
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
