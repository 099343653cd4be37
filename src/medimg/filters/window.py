"""CT display windows: named presets and window/level with DICOM's linear VOI function."""

from __future__ import annotations

from typing import Literal

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.filters._common import check_scalar, filter_output, float_array

__all__ = ["CT_WINDOWS", "window", "apply_window"]

_filters = registry("filters")

#: Standard CT windows as (level, width) in HU (Radiopaedia, "Windowing (CT)").
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "liver": (30.0, 150.0),
}

Preset = Literal["lung", "mediastinum", "bone", "brain", "liver", "dicom"]


def apply_window(values: np.ndarray, level: float, width: float) -> np.ndarray:
    r"""DICOM PS3.3 C.11.2.1.2.1 linear VOI function onto [0, 1] (float64 array).

    With centre :math:`c` and width :math:`w \ge 1`: 0 where :math:`x \le c - 0.5 - (w-1)/2`,
    1 where :math:`x > c - 0.5 + (w-1)/2`, otherwise :math:`(x - (c - 0.5)) / (w - 1) + 0.5`.
    """
    x = np.asarray(values, dtype=np.float64)
    c, w = float(level), float(width)
    y = (x - (c - 0.5)) / (w - 1.0) + 0.5 if w > 1 else (x > c - 0.5).astype(np.float64)
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, y)
    y = np.where(x > c - 0.5 + (w - 1) / 2, 1.0, y)
    return y


@_filters.register("window", tags=("intensity",))
def window(
    image: Image,
    *,
    preset: Preset | None = None,
    level: float | None = None,
    width: float | None = None,
    output: Literal["unit", "clip"] = "unit",
) -> Image:
    """Apply a CT window: a named preset, the file's own window, or an explicit level and width.

    Presets (level / width in HU): lung -600 / 1500, mediastinum 50 / 350, bone 400 / 1800,
    brain 40 / 80, liver 30 / 150; ``"dicom"`` takes the first Window Center / Width of the
    file (``meta["window_presets"]``).

    Parameters
    ----------
    image
        Scalar image in HU (or any units for an explicit level and width).
    preset
        A preset name; give either ``preset`` or both ``level`` and ``width``.
    level
        Window centre in image units (HU for CT).
    width
        Window width in image units (>= 1).
    output
        ``"unit"``: DICOM's linear VOI function onto [0, 1] (for display or as a network
        input); ``"clip"``: intensities clipped to ``[level - width/2, level + width/2]`` and
        kept in image units.

    Returns
    -------
    Image
        float32 image on the input's grid; ``meta["window"]`` holds the level and width used.

    Raises
    ------
    ParameterError
        Both or neither of a preset and level/width, a width below 1, a CT preset on an image
        whose ``meta["Modality"]`` is not CT, or ``"dicom"`` without a stored window.
    """
    check_scalar(image)
    if preset is not None and (level is not None or width is not None):
        raise ParameterError("window: give either preset or level and width, not both")
    if preset is None:
        if level is None or width is None:
            msg = f"window: give a preset ({', '.join([*CT_WINDOWS, 'dicom'])}) or both level and width"
            raise ParameterError(msg)
        lvl, wid, source = float(level), float(width), "explicit"
    elif preset == "dicom":
        stored = image.meta.get("window_presets") or []
        if not stored:
            raise ParameterError("window: preset 'dicom' needs a Window Center/Width in the file (meta['window_presets'] is empty)")
        lvl, wid, source = float(stored[0]["center"]), float(stored[0]["width"]), "dicom"
    else:
        if preset not in CT_WINDOWS:
            from medimg.errors import UnknownNameError

            raise UnknownNameError("CT window preset", preset, [*CT_WINDOWS, "dicom"])
        modality = image.meta.get("Modality")
        if modality not in (None, "", "CT"):
            msg = f"window: preset {preset!r} is a CT window in HU, but the image's modality is {modality}; give level and width"
            raise ParameterError(msg)
        lvl, wid = CT_WINDOWS[preset]
        source = preset
    if not np.isfinite(lvl) or not np.isfinite(wid) or wid < 1:
        raise ParameterError(f"window: width must be >= 1 and level finite (image units), got level={lvl}, width={wid}")
    if output not in ("unit", "clip"):
        raise ParameterError(f"window: output must be 'unit' or 'clip', got {output!r}")
    x = float_array(image, np.float64)
    out = apply_window(x, lvl, wid) if output == "unit" else np.clip(x, lvl - wid / 2, lvl + wid / 2)
    info = {"level": lvl, "width": wid, "source": source, "output": output}
    return filter_output(image, out.astype(np.float32), {"op": "filters.window", **info}, window=info)
