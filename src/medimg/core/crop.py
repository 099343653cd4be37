"""Cropping an image to the box around a mask, geometry kept (the crop's voxels are the same
points in the patient as the original's)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medimg.core.image import Image
from medimg.errors import ParameterError

__all__ = ["crop_to_mask", "label_box"]


def label_box(labels: np.ndarray, label: Any = True, *, count: bool = False,
              slab_bytes: int = 1 << 22) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Index bounds (inclusive, (z, y, x)) of ``labels == label`` in a 3-D array, and with ``count``
    its number of voxels (else 0); None when no voxel has the label. ``label`` True with a boolean
    array: its True voxels. The array is compared ``slab_bytes`` of it at a time (whole slices; a
    smaller array in one comparison), so no boolean array of the whole map is made; only the
    slices that hold the label are reduced further."""
    if labels.ndim != 3:
        raise ParameterError(f"label_box: a 3-D array is needed, got {labels.ndim}-D")
    nz, ny, nx = labels.shape
    per = max(1, int(slab_bytes) // max(1, ny * nx * labels.itemsize))
    as_is = label is True and labels.dtype == np.bool_
    z_first = z_last = -1
    plane = None
    total = 0
    for z0 in range(0, nz, per):
        eq = labels[z0:z0 + per] if as_is else labels[z0:z0 + per] == label
        rows = np.flatnonzero(eq.reshape(eq.shape[0], -1).any(axis=1))
        if rows.size == 0:
            continue
        if z_first < 0:
            z_first = z0 + int(rows[0])
        z_last = z0 + int(rows[-1])
        hit = eq[int(rows[0]):int(rows[-1]) + 1]
        inplane = hit.any(axis=0)
        plane = inplane if plane is None else plane | inplane
        if count:
            total += int(np.count_nonzero(hit))
    if plane is None:
        return None
    ys = np.flatnonzero(plane.any(axis=1))
    xs = np.flatnonzero(plane.any(axis=0))
    return (np.asarray([z_first, ys[0], xs[0]], dtype=np.intp), np.asarray([z_last, ys[-1], xs[-1]], dtype=np.intp),
            total)


def crop_to_mask(image: Image, mask: Image, *, margin_mm: float = 10.0) -> Image:
    """The part of ``image`` inside the bounding box of ``mask``'s non-zero voxels, grown by
    ``margin_mm`` (mm, per axis; clipped at the image's edges).

    ``mask`` must be on ``image``'s grid. The result keeps spacing and direction; its origin is
    the physical position of its first voxel, so it overlays the original exactly.
    """
    if not margin_mm >= 0 or not math.isfinite(margin_mm):
        raise ParameterError(f"crop_to_mask: margin_mm must be >= 0 mm, got {margin_mm}")
    image.check_same_grid(mask, names=("image", "mask"))
    nd = image.spatial_ndim
    inside = np.asarray(mask.array) != 0
    if inside.ndim > nd:  # a channel axis: any channel
        inside = inside.reshape(*inside.shape[:nd], -1).any(axis=-1)
    if not inside.any():
        raise ParameterError("crop_to_mask: the mask is empty")
    idx = np.nonzero(inside)
    shape = inside.shape
    spacing_arr = np.asarray(image.spacing[:nd])[::-1]  # array axis order
    grow = [int(math.ceil(margin_mm / s - 1e-9)) for s in spacing_arr]
    lo = [max(int(i.min()) - g, 0) for i, g in zip(idx, grow, strict=True)]
    hi = [min(int(i.max()) + g, n - 1) for i, g, n in zip(idx, grow, shape, strict=True)]
    box = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
    arr = np.ascontiguousarray(image.array[box])
    affine = np.array(image.affine, dtype=float)
    affine[:3, 3] = image.index_to_physical(np.asarray(lo[::-1], dtype=float))  # (x, y[, z]) index order
    meta = dict(image.meta)
    meta["crop"] = {"index_lo_xyz": lo[::-1], "index_hi_xyz": hi[::-1], "margin_mm": float(margin_mm)}
    return Image(arr, affine, meta=meta)
