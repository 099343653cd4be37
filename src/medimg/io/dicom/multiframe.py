"""Enhanced (functional-group) multi-frame objects: Enhanced CT/MR/PET, parametric maps, SEG.

Each frame's geometry and rescale come from the Per-frame Functional Groups Sequence, falling
back to the Shared Functional Groups Sequence, as PS3.3 C.7.6.16 prescribes. Stack ID,
temporal position, echo time and b-value become split keys, so one file with several stacks
or time points yields several volumes.
"""

from __future__ import annotations

import warnings
from typing import Any

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


def _floats(header: Header, value: Any, keyword: str, frame: int) -> list[float] | None:
    """A multi-valued DS as floats; ``None`` (with a problem recorded) when a value is not a number."""
    if value is None:
        return None
    items = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    try:
        return [float(v) for v in items]
    except (TypeError, ValueError, OverflowError):
        header.problems.append(f"{keyword} of frame {frame + 1} = {str(value)[:64]!r} is not a list of numbers: ignored")
        return None


def enhanced_frames(header: Header) -> list[Any]:
    """The frames of an enhanced multi-frame file, one :class:`Frame` each.

    Raises :class:`FileFormatError` when the functional groups cannot be read; values that are
    not numbers are handled as in :func:`~medimg.io.dicom.scan.frames_of` (a NaN rescale is an
    error, unusable geometry is dropped with a problem recorded).
    """
    import pydicom

    from medimg.errors import MedimgError
    from medimg.io.dicom.header import open_bounded

    try:
        with warnings.catch_warnings(), open_bounded(header.path) as fh:
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=header.via_pydicom)
        return _frames(header, ds)
    except MedimgError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - pydicom parses sequences lazily: damage shows up here
        raise FileFormatError(header.path, f"cannot read its functional groups ({type(err).__name__}: "
                              f"{str(err)[:200]})") from err


def _frames(header: Header, ds: Any) -> list[Any]:
    from medimg.io.dicom.scan import (
        Frame,
        checked_orientation,
        checked_position,
        checked_spacing,
        finite_value,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shared_seq = ds.get("SharedFunctionalGroupsSequence")
        shared = shared_seq[0] if shared_seq else None
        per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence") or []
    n = header.number_of_frames
    frames = []
    for k in range(n):
        pf = per_frame_seq[k] if k < len(per_frame_seq) else None
        ipp = _floats(header, _lookup(pf, shared, "PlanePositionSequence", "ImagePositionPatient"),
                      "ImagePositionPatient", k)
        iop = _floats(header, _lookup(pf, shared, "PlaneOrientationSequence", "ImageOrientationPatient"),
                      "ImageOrientationPatient", k)
        ps = _floats(header, _lookup(pf, shared, "PixelMeasuresSequence", "PixelSpacing"), "PixelSpacing", k)
        thickness = _floats(header, _lookup(pf, shared, "PixelMeasuresSequence", "SliceThickness"), "SliceThickness", k)
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
        keys = {k2: (_number_or_text(v)) for k2, v in keys.items() if v is not None}
        position = checked_position(header, ipp)
        orientation = checked_orientation(header, iop)
        spacing = checked_spacing(header, ps)
        if position is None or orientation is None:
            keys["frame_stack"] = str(header.path)
        frames.append(
            Frame(
                header=header,
                index=k,
                position=position,
                orientation=orientation,
                pixel_spacing=spacing,
                slope=1.0 if slope in (None, 0) else finite_value(header, "RescaleSlope", slope),
                intercept=0.0 if intercept is None else finite_value(header, "RescaleIntercept", intercept),
                thickness=thickness[0] if thickness else None,
                keys=keys,
            )
        )
    if len(header.problems) > 20:  # one problem per frame of a large object says nothing more
        del header.problems[20:]
        header.problems.append("(further problems of this file not listed)")
    return frames


def _number_or_text(value: Any) -> Any:
    if isinstance(value, (int, float)) or hasattr(value, "real"):
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            return str(value)
    return str(value)
