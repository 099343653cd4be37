"""DICOM Segmentation (SEG) objects: label maps to SEG referencing their source series, and back.

Writing uses highdicom. The label map must lie on the grid of a DICOM series (the one it was
made from): each of its slices becomes the frames of one source instance, and the SEG
references the source series, study, frame of reference and instances, so viewers overlay it.

Label values and segments: the non-zero values of the label map, in increasing order, become
segments 1, 2, ...; a map whose labels are 1..N therefore has segment numbers equal to its
labels, and reading it back gives the same array (the round trip is exact). Each segment's
label (name) is taken from ``segment_names`` or is ``"label <value>"``.

Reading returns a label map whose values are the segment numbers (overlapping segments —
possible in SEG, not in a label map — raise :class:`~medimg.errors.FileFormatError`). With a
``reference`` image read from the source series, the frames are placed by their referenced
source instances on exactly that grid; otherwise on the SEG's own volume geometry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medimg.core.files import atomic_path
from medimg.core.image import Image
from medimg.core.optional import require
from medimg.errors import FileFormatError, GeometryMismatchError, ParameterError

__all__ = ["write_seg", "read_seg", "source_datasets"]

_ALGORITHM_FAMILIES = {
    "thresholding": "HistogramAnalysis",
    "region_growing": "NeighborhoodAnalysis",
    "morphology": "MorphologicalOperations",
    "deformable_models": "DeformableModels",
    "artificial_intelligence": "ArtificialIntelligence",
    "manual": "ManualProcessing",
}


def source_datasets(label: Image, source: str | Path | Sequence[str | Path]) -> list[Any]:
    """The pydicom headers (no pixels) of the source instances of ``label``'s slices, in z order.

    ``source`` is the series folder (or its files). The series is the one whose Series Instance
    UID is ``label.meta["SeriesInstanceUID"]`` when the label map carries it, else the only
    series there. Its grid must be ``label``'s grid.

    Raises
    ------
    GeometryMismatchError
        The label map is not on the source series' grid.
    """
    import pydicom

    from medimg.io.dicom.scan import scan
    from medimg.io.dicom.volume import analyze_geometry

    result = scan(source)
    series = [s for s in result.series if s.has_geometry]
    uid = label.meta.get("SeriesInstanceUID")
    if uid:
        series = [s for s in series if s.series_uid == uid] or series
    if not series:
        raise FileFormatError(Path(str(source)), "no DICOM image series with patient geometry found")
    if len(series) > 1:
        from medimg.errors import MultipleSeriesError

        keys = ", ".join(s.key for s in series)
        msg = (f"{source}: several series ({keys}); give the label map meta['SeriesInstanceUID'] "
               "or a folder holding only the source series")
        raise MultipleSeriesError(msg)
    geo = analyze_geometry(series[0])
    shape = (len(geo.frames),) + tuple(series[0].shape[1:])
    if label.spatial_ndim != 3 or label.spatial_shape != shape or not np.allclose(label.affine, geo.affine, atol=1e-3):
        ref = Image(np.zeros(shape, dtype=np.uint8), geo.affine)
        ref.check_same_grid(label, names=("source series", "label map"), tol_mm=1e-3)
        raise GeometryMismatchError(f"label map grid {label.grid_summary()} is not the source series grid")
    if any(f.header.number_of_frames > 1 for f in geo.frames):
        raise ParameterError("write_seg supports single-frame source series (one file per slice)")
    return [pydicom.dcmread(f.path, stop_before_pixels=True) for f in geo.frames]


def write_seg(
    label: Image,
    source: str | Path | Sequence[str | Path],
    path: str | Path,
    *,
    segment_names: Mapping[int, str] | None = None,
    algorithm_name: str = "medimg",
    algorithm_family: Literal["thresholding", "region_growing", "morphology", "deformable_models",
                              "artificial_intelligence", "manual"] = "artificial_intelligence",
    series_description: str = "Segmentation",
    series_number: int = 300,
    seed: int | None = None,
) -> Path:
    """Write a label map as a DICOM SEG (binary segments) referencing its source series.

    Parameters
    ----------
    label
        Integer label map (3-D, on the source series' grid; 0 = background).
    source
        The source series folder (or files); see :func:`source_datasets`.
    path
        The SEG file to write (atomically).
    segment_names
        Names of the labels (``{1: "liver", 2: "lesion"}``); others are ``"label <value>"``.
    algorithm_name, algorithm_family
        Segment Algorithm Name and the family (DICOM CID 7162) recorded in each segment;
        ``"manual"`` writes MANUAL segments without algorithm identification.
    series_description, series_number
        Of the new SEG series.
    seed
        Makes the SEG's Series and SOP Instance UIDs deterministic (derived from the seed and
        the source series UID); ``None``: random UIDs.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ParameterError
        The label map is empty, not integer, or has negative labels.
    GeometryMismatchError
        It is not on the source series' grid.
    """
    hd = require("highdicom", extra="dicomnet")
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from medimg import __version__

    if label.channel_axis is not None or label.dtype.kind not in "iub":
        raise ParameterError(f"write_seg needs a scalar integer label map, got {label.dtype} with {label.n_channels} channel(s)")
    array = np.asarray(label.array)
    values = [int(v) for v in np.unique(array) if v != 0]
    if not values:
        raise ParameterError("write_seg: the label map is empty (no non-zero voxel); a SEG needs a segment")
    if values[0] < 0:
        raise ParameterError(f"write_seg: labels must be >= 0, got {values[0]}")
    if algorithm_family not in _ALGORITHM_FAMILIES:
        from medimg.errors import UnknownNameError

        raise UnknownNameError("algorithm family", str(algorithm_family), _ALGORITHM_FAMILIES)
    sources = source_datasets(label, source)
    segment_of = np.zeros(int(values[-1]) + 1, dtype=np.uint16)
    for number, value in enumerate(values, start=1):
        segment_of[value] = number
    pixels = segment_of[array.astype(np.int64)]
    pixels = pixels.astype(np.uint8 if len(values) < 256 else np.uint16)
    names = dict(segment_names or {})
    if algorithm_family == "manual":
        algorithm_type, identification = hd.seg.SegmentAlgorithmTypeValues.MANUAL, None
    else:
        algorithm_type = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        family = getattr(codes.cid7162, _ALGORITHM_FAMILIES[algorithm_family])
        identification = hd.AlgorithmIdentificationSequence(name=algorithm_name, family=family, version=__version__)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=str(names.get(value, f"label {value}"))[:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=algorithm_type,
            algorithm_identification=identification,
            tracking_uid=generate_uid(entropy_srcs=None if seed is None else [str(seed), sources[0].SeriesInstanceUID, "segment", str(value)]),
            tracking_id=f"label {value}",
        )
        for number, value in enumerate(values, start=1)
    ]
    entropy = None if seed is None else [str(seed), str(sources[0].SeriesInstanceUID)]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(entropy_srcs=None if entropy is None else [*entropy, "series"]),
        series_number=int(series_number),
        sop_instance_uid=generate_uid(entropy_srcs=None if entropy is None else [*entropy, "instance"]),
        instance_number=1,
        manufacturer="medimg",
        manufacturer_model_name="medimg",
        software_versions=__version__,
        device_serial_number="0",
        series_description=series_description,
        omit_empty_frames=True,
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path


def _from_volume(volume: Any, meta: dict[str, Any]) -> Image:
    """A highdicom Volume (index (slice, row, column) -> LPS) as a medimg Image (index (x, y, z))."""
    affine = np.asarray(volume.affine, dtype=float).copy()
    affine[:, :3] = affine[:, [2, 1, 0]]
    return Image(np.asarray(volume.array), affine, meta=meta)


def read_seg(path: str | Path, *, reference: Image | None = None) -> Image:
    """Read a DICOM SEG as a label map of its segment numbers.

    Parameters
    ----------
    path
        The SEG file.
    reference
        Optional image of the source series (as :func:`medimg.io.read` gives it, with
        ``meta["sop_instance_uids"]``): the label map is then on exactly its grid, each slice
        taken from the frames that reference that slice's instance. Without it, the label map
        has the SEG's own geometry (its frames' positions).

    Returns
    -------
    Image
        ``uint8`` (``uint16`` past 255 segments) label map; ``meta["segments"]`` lists
        ``{"number", "label", "tracking_id"}`` of each segment and ``meta["SeriesInstanceUID"]``
        etc. are the SEG's.

    Raises
    ------
    FileFormatError
        Not a SEG, unreadable, overlapping segments, or frames that reference none of the
        reference's instances.
    """
    hd = require("highdicom", extra="dicomnet")
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "no such file")
    try:
        seg = hd.seg.segread(path)
    except Exception as err:  # highdicom/pydicom raise many types for non-SEG input
        raise FileFormatError(path, f"not a readable DICOM SEG ({type(err).__name__}: {err})") from err
    numbers = [int(n) for n in seg.get_segment_numbers()]
    segments = [
        {"number": n, "label": str(seg.get_segment_description(n).segment_label),
         "tracking_id": seg.get_segment_description(n).tracking_id}
        for n in numbers
    ]
    dtype = np.uint8 if max(numbers, default=0) < 256 else np.uint16
    meta = {"source_format": "dicom-seg", "segments": segments, "Modality": "SEG",
            "SeriesInstanceUID": str(seg.SeriesInstanceUID), "StudyInstanceUID": str(seg.StudyInstanceUID),
            "FrameOfReferenceUID": str(seg.get("FrameOfReferenceUID", ""))}
    try:
        if reference is not None and reference.meta.get("sop_instance_uids"):
            uids = [str(u) for u in reference.meta["sop_instance_uids"]]
            referenced = {str(u) for _, _, u in seg.get_source_image_uids()}
            if not referenced & set(uids):
                raise FileFormatError(path, "the SEG references none of the reference image's instances")
            array = np.zeros(reference.spatial_shape if reference.spatial_ndim == 3 else (1, *reference.spatial_shape),
                             dtype=dtype)
            present = [k for k, u in enumerate(uids) if u in referenced]
            block = seg.get_pixels_by_source_instance(
                [uids[k] for k in present], combine_segments=True, relabel=False, dtype=dtype)
            array[present] = block
            meta.update({k: reference.meta[k] for k in ("sop_instance_uids",) if k in reference.meta})
            return reference.with_array(array if reference.spatial_ndim == 3 else array[0], meta=meta)
        volume = seg.get_volume(combine_segments=True, relabel=False, dtype=dtype)
    except FileFormatError:
        raise
    except Exception as err:
        raise FileFormatError(path, f"cannot build a label map from this SEG ({type(err).__name__}: {err})") from err
    image = _from_volume(volume, meta)
    if reference is not None and not reference.same_grid(image, tol_mm=1e-3):
        image = reference.with_array(_nearest_on(image, reference).astype(dtype), meta=meta)
    return image


def _nearest_on(image: Image, reference: Image) -> np.ndarray:
    """``image``'s values at ``reference``'s voxel centres (nearest neighbour, 0 outside)."""
    from medimg.core.resample import resample_like

    return resample_like(image, reference, interpolator="nearest", default_value=0).array
