"""Reorienting an image: permuting and flipping voxel axes without resampling.

The voxels stay where they are in patient space; only the storage order changes, so the
result describes exactly the same physical image (like ``SimpleITK.DICOMOrient``).
"""

from __future__ import annotations

import numpy as np

from medimg.core.image import Image, orientation_code
from medimg.errors import ParameterError

__all__ = ["reorient"]

_LETTER_AXIS = {"L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1), "S": (2, 1), "I": (2, -1)}


def reorient(image: Image, code: str = "LPS") -> Image:
    """Permute and flip the voxel axes so that they point (as nearly as possible) along ``code``.

    ``code`` names, for the voxel axes x, y, z in turn, the patient direction each should point
    to (``"LPS"``: x to the patient's left, y posterior, z superior; ``"RAS"``: NIfTI's usual
    storage). Oblique images get the nearest such axes. No interpolation happens.
    """
    code = code.upper()
    if len(code) != 3 or {_LETTER_AXIS.get(c, (None,))[0] for c in code} != {0, 1, 2}:
        msg = f"orientation code must name each of L/R, P/A, S/I once (e.g. 'LPS' or 'RAS'), got {code!r}"
        raise ParameterError(msg)
    nd = image.spatial_ndim
    if nd != 3:
        raise ParameterError("reorient needs a 3-D image")
    current = orientation_code(image.direction)
    if current == code:
        return image
    # Voxel axis i of the image points to physical axis phys[i] with sign sign[i].
    phys = [_LETTER_AXIS[c][0] for c in current]
    sign = [_LETTER_AXIS[c][1] for c in current]
    target_pos = {_LETTER_AXIS[c][0]: j for j, c in enumerate(code)}
    target_sign = {_LETTER_AXIS[c][0]: _LETTER_AXIS[c][1] for c in code}
    # xyz-ordered array view: axes (x, y, z[, c])
    has_c = image.channel_axis == -1
    arr = image.array
    xyz = np.transpose(arr, (2, 1, 0, 3)) if has_c else arr.T
    affine = image.affine.copy()
    sizes = image.size
    for i in range(3):
        if sign[i] != target_sign[phys[i]]:
            xyz = np.flip(xyz, axis=i)
            flip = np.eye(4)
            flip[i, i] = -1.0
            flip[i, 3] = sizes[i] - 1
            affine = affine @ flip
    perm = [0, 0, 0]
    for i in range(3):
        perm[target_pos[phys[i]]] = i
    xyz = np.transpose(xyz, tuple(perm) + ((3,) if has_c else ()))
    permute = np.zeros((4, 4))
    permute[3, 3] = 1.0
    for j in range(3):
        permute[perm[j], j] = 1.0
    affine = affine @ permute
    out = np.transpose(xyz, (2, 1, 0, 3)) if has_c else xyz.T
    return Image(np.ascontiguousarray(out), affine, meta=image.meta, channel_axis=image.channel_axis,
                 has_patient_geometry=image.has_patient_geometry)
