"""Segmentation: thresholds, region growing, watershed, level sets, morphology and U-Net,
behind one registry.

Every method is registered in ``registry("segmentation")`` and reached by name through
:func:`segment`, so the CLI, the YAML pipeline and the docs see the same list. Conventions:

* The input is an :class:`~medimg.Image`; the output is a new label map on the input's grid
  (same shape and affine): ``uint8`` with 0 = background and 1 = foreground, unless a method
  says otherwise (:func:`connected_components` numbers its components).
* Intensity parameters are in image units (HU for CT); sizes are in mm^3 and distances and
  radii in mm, computed from the image spacing; seeds are LPS mm points (``seeds_mm``) or
  (x, y, z) voxel indices (``seeds_voxel``).
* ``mask`` (an optional label map on the same grid) is the region of interest: only voxels
  where ``mask != 0`` are considered and the output is 0 outside it.
* Inputs are never modified.
"""

from __future__ import annotations

from typing import Any

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.segmentation.levelset import chan_vese, edge_map, geodesic_active_contour
from medimg.segmentation.morphology import (
    closing,
    connected_components,
    dilate,
    erode,
    fill_holes,
    largest_component,
    opening,
    remove_small,
)
from medimg.segmentation.region import confidence_connected, connected_threshold
from medimg.segmentation.threshold import (
    HU_RANGES,
    auto_threshold,
    hu_range,
    multi_otsu,
    otsu,
    threshold,
    threshold_value,
)
from medimg.segmentation.unet import unet_segment
from medimg.segmentation.watershed import watershed

__all__ = [
    "segment",
    "threshold",
    "otsu",
    "auto_threshold",
    "threshold_value",
    "multi_otsu",
    "hu_range",
    "HU_RANGES",
    "connected_threshold",
    "confidence_connected",
    "watershed",
    "chan_vese",
    "geodesic_active_contour",
    "edge_map",
    "largest_component",
    "remove_small",
    "connected_components",
    "fill_holes",
    "opening",
    "closing",
    "dilate",
    "erode",
    "unet_segment",
]


def segment(image: Image, method: str, /, **params: Any) -> Image:
    """Run the segmentation method registered as ``method`` on ``image``.

    Parameters
    ----------
    image
        The input image (intensities for threshold methods, a label map for clean-up steps).
    method
        A name registered in ``registry("segmentation")``, e.g. ``"threshold"``, ``"otsu"``,
        ``"li"``, ``"triangle"``, ``"multi_otsu"``, ``"hu_range"``, ``"connected_threshold"``,
        ``"confidence_connected"``, ``"watershed"``, ``"chan_vese"``,
        ``"geodesic_active_contour"``, ``"largest_component"``, ``"remove_small"``,
        ``"fill_holes"``, ``"opening"``, ``"closing"``, ``"unet"`` (``medimg list segmentation``
        shows them all with their parameters).
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
