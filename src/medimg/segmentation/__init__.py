"""Segmentation: intensity thresholds and label-map clean-up, behind one registry.

Every method is registered in ``registry("segmentation")`` and reached by name through
:func:`segment`, so the CLI, the YAML pipeline and the docs see the same list. Conventions:

* The input is an :class:`~medimg.Image`; the output is a new label map on the input's grid
  (same shape and affine): ``uint8`` with 0 = background and 1 = foreground, unless a method
  says otherwise (:func:`connected_components` numbers its components).
* Intensity parameters are in image units (HU for CT); sizes are in mm^3, computed from the
  image spacing.
* ``mask`` (an optional label map on the same grid) is the region of interest: only voxels
  where ``mask != 0`` are considered and the output is 0 outside it.
* Inputs are never modified.
"""

from __future__ import annotations

from typing import Any

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.segmentation.morphology import (
    connected_components,
    fill_holes,
    largest_component,
    remove_small,
)
from medimg.segmentation.threshold import otsu, threshold

__all__ = [
    "segment",
    "threshold",
    "otsu",
    "largest_component",
    "remove_small",
    "connected_components",
    "fill_holes",
]


def segment(image: Image, method: str, **params: Any) -> Image:
    """Run the segmentation method registered as ``method`` on ``image``.

    Parameters
    ----------
    image
        The input image (intensities for threshold methods, a label map for clean-up steps).
    method
        A name registered in ``registry("segmentation")``, e.g. ``"threshold"``, ``"otsu"``,
        ``"largest_component"``, ``"remove_small"``, ``"fill_holes"``.
    **params
        The method's keyword parameters, validated against its signature (unknown names and
        wrong types raise :class:`~medimg.errors.ParameterError`).

    Returns
    -------
    Image
        A label map on ``image``'s grid.

    Raises
    ------
    UnknownNameError
        ``method`` is not registered (the message suggests the closest name).
    """
    return registry("segmentation").get(method)(image, **params)
