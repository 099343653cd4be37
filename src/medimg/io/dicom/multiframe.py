"""Enhanced (functional-group) multi-frame objects: Enhanced CT/MR/PET, parametric maps, SEG.

Each frame's geometry and rescale come from the Per-frame Functional Groups Sequence, falling
back to the Shared Functional Groups Sequence, as PS3.3 C.7.6.16 prescribes. Stack ID,
temporal position, echo time and b-value become split keys, so one file with several stacks
or time points yields several volumes.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from medimg.errors import FileFormatError
from medimg.io.dicom.header import Header

__all__ = ["enhanced_frames"]


def _item(group: Any, sequence: str) -> Any:
    if group is None:
        return None
    seq = getattr(group, sequence, None)
    return seq[0] if seq else None


def _lookup(per_frame: Any, shared: Any, sequence: str, attribute: str) -> Any:
    for group in (per_frame, shared):
        item = _item(group, sequence)
        if item is not None and attribute in item:
            value = item.get(attribute)
            if value is not None and value != "":
                return value
    return None


def enhanced_frames(header: Header) -> list[Any]:
    """The frames of an enhanced multi-frame file, one :class:`Frame` each."""
    import pydicom

    from medimg.io.dicom.scan import Frame

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(header.path, stop_before_pixels=True, force=header.via_pydicom)
    except Exception as err:  # noqa: BLE001
        raise FileFormatError(header.path, f"cannot read its functional groups ({err})") from err
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence") or []
    n = header.number_of_frames
    frames = []
    for k in range(n):
        pf = per_frame_seq[k] if k < len(per_frame_seq) else None
        ipp = _lookup(pf, shared, "PlanePositionSequence", "ImagePositionPatient")
        iop = _lookup(pf, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        ps = _lookup(pf, shared, "PixelMeasuresSequence", "PixelSpacing")
        thickness = _lookup(pf, shared, "PixelMeasuresSequence", "SliceThickness")
        slope = _lookup(pf, shared, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _lookup(pf, shared, "PixelValueTransformationSequence", "RescaleIntercept")
        if slope is None:
            slope = header.get("RescaleSlope")
        if intercept is None:
            intercept = header.get("RescaleIntercept")
        keys: dict[str, Any] = {
            "StackID": _lookup(pf, shared, "FrameContentSequence", "StackID"),
            "TemporalPositionIndex": _lookup(pf, shared, "FrameContentSequence", "TemporalPositionIndex"),
            "EffectiveEchoTime": _lookup(pf, shared, "MREchoSequence", "EffectiveEchoTime"),
            "DiffusionBValue": _lookup(pf, shared, "MRDiffusionSequence", "DiffusionBValue"),
            "SegmentNumber": _lookup(pf, shared, "SegmentIdentificationSequence", "ReferencedSegmentNumber"),
        }
        keys = {k2: (float(v) if isinstance(v, (int, float)) or hasattr(v, "real") else str(v))
                for k2, v in keys.items() if v is not None}
        position = np.asarray([float(v) for v in ipp], dtype=float) if ipp and len(ipp) == 3 else None
        orientation = tuple(float(v) for v in iop) if iop and len(iop) == 6 else None
        spacing = (float(ps[0]), float(ps[1])) if ps and len(ps) == 2 else None
        if position is None or orientation is None:
            keys["frame_stack"] = str(header.path)
        frames.append(
            Frame(
                header=header,
                index=k,
                position=position,
                orientation=orientation,
                pixel_spacing=spacing,
                slope=1.0 if slope in (None, 0) else float(slope),
                intercept=0.0 if intercept is None else float(intercept),
                thickness=None if thickness is None else float(thickness),
                keys=keys,
            )
        )
    return frames
