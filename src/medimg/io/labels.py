"""Label maps from and to any file medimg knows: image files, DICOM SEG and RTSTRUCT.

:func:`read_labels` looks at what a file is (an image file by extension; a DICOM file by its
Modality: ``SEG`` or ``RTSTRUCT``; anything else through :func:`medimg.io.read`) and returns
an integer label map; :func:`write_labels` writes one as a DICOM SEG (``.dcm``, on the grid
of its source series) or as an image file, with its provenance sidecar either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medimg.core.files import full_suffix
from medimg.core.image import Image
from medimg.core.provenance import Manifest
from medimg.errors import FileFormatError, ParameterError, UnsupportedFormatError

__all__ = ["read_labels", "write_labels", "dicom_modality", "LABEL_WRITE_SUFFIXES"]

#: What :func:`write_labels` writes: the image formats of :func:`medimg.io.write` and ``.dcm``
#: (a DICOM SEG).
LABEL_WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".png", ".dcm")


def dicom_modality(path: str | Path) -> str | None:
    """The Modality (0008,0060) of the DICOM file ``path``; ``None`` for a folder, an image
    file (by extension) or a file that is not DICOM."""
    from medimg.io.formats import ITK_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES

    path = Path(path)
    if not path.is_file() or full_suffix(path) in NIFTI_SUFFIXES + ITK_SUFFIXES + RASTER_SUFFIXES:
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=["Modality"])
    except Exception:  # noqa: BLE001 - not DICOM: the reader that follows explains
        return None
    return str(ds.get("Modality", "")) or None


def read_labels(path: str | Path, *, reference: Image | None = None,
                rois: Sequence[int | str] | None = None) -> Image:
    """Read a label map from an image file, a DICOM folder, a DICOM SEG or an RTSTRUCT.

    Parameters
    ----------
    path
        A NIfTI / NRRD / MHA / PNG label map, a DICOM SEG file, an RTSTRUCT file, or a DICOM
        file or folder of a labelled series.
    reference
        The image the labels belong to (as :func:`medimg.io.read` gives it). A SEG is then put
        on exactly its grid (otherwise it keeps its own geometry); an RTSTRUCT needs it (its
        contours are rasterised on this grid).
    rois
        RTSTRUCT only: the ROI names or numbers to rasterise, in label order (default: all).

    Returns
    -------
    Image
        A scalar integer label map. An image file stored as floats whose values are all whole
        numbers (a common NIfTI habit) comes back as ``int32``.

    Raises
    ------
    FileFormatError
        ``path`` does not exist or cannot be read.
    ParameterError
        An RTSTRUCT without ``reference``; ``rois`` for something that is not an RTSTRUCT; a
        vector image or non-integer values (not a label map).
    """
    from medimg import io

    path = Path(path)
    if not path.exists():
        raise FileFormatError(path, "no such file or folder")
    modality = dicom_modality(path)
    if rois is not None and modality != "RTSTRUCT":
        raise ParameterError(f"{path}: ROIs can be chosen in an RTSTRUCT only; this is {modality or 'not DICOM'}")
    if modality == "SEG":
        from medimg.io.dicom.seg import read_seg

        labels = read_seg(path, reference=reference)
    elif modality == "RTSTRUCT":
        if reference is None:
            raise ParameterError(f"{path}: an RTSTRUCT needs the image it was drawn on "
                                 "(reference=...; CLI: --reference)")
        from medimg.io.dicom.rtstruct import read_rtstruct

        labels = read_rtstruct(path, reference, rois=None if rois is None else list(rois))
    else:
        labels = io.read(path)
    if labels.channel_axis is not None:
        raise ParameterError(f"{path}: a label map must be a scalar image, got {labels.n_channels} channels")
    if labels.dtype.kind == "f":
        values = labels.array
        if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
            raise ParameterError(f"{path}: not a label map (non-integer values, {labels.dtype})")
        labels = labels.with_array(values.astype(np.int32))
    elif labels.dtype.kind not in "iub":
        raise ParameterError(f"{path}: a label map must hold integers, got {labels.dtype}")
    return labels


def write_labels(labels: Image, path: str | Path, *, source: str | Path | None = None,
                 segment_names: Mapping[int, str] | None = None, provenance: Manifest | None = None) -> Path:
    """Write a label map as a DICOM SEG (``.dcm``) or an image file, with its provenance sidecar.

    Warnings highdicom raises while writing a SEG (it quotes a one-component Patient's Name of
    the source) are recorded in the sidecar with quoted values withheld and re-issued as one
    ``UserWarning`` line naming the output.

    Parameters
    ----------
    labels
        Integer label map.
    path
        ``.dcm`` writes a DICOM SEG (one segment per non-zero label); ``.nii.gz``, ``.nii``,
        ``.nrrd``, ``.mha``, ``.png`` an image file (:func:`medimg.io.write`).
    source
        SEG only, required: the DICOM series folder (or files) the labels were drawn on; the
        label map must be on its grid.
    segment_names
        SEG only: label -> segment name (default ``"label <n>"``).
    provenance
        The run that produced the labels, recorded in the sidecar (see :func:`medimg.io.write`).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    UnsupportedFormatError
        An extension outside :data:`LABEL_WRITE_SUFFIXES`.
    ParameterError
        A SEG without ``source``, or SEG options for an image file.
    """
    from medimg import io
    from medimg.io.sidecar import write_with_sidecar

    path = Path(path)
    suffix = full_suffix(path)
    if suffix not in LABEL_WRITE_SUFFIXES:
        raise UnsupportedFormatError(f"{path}: cannot write a label map as {suffix or '(no extension)'!r}; "
                                     f"use one of {', '.join(LABEL_WRITE_SUFFIXES)}")
    if suffix != ".dcm":
        if source is not None or segment_names:
            raise ParameterError(f"{path}: source and segment names apply to a DICOM SEG (.dcm) only")
        return io.write(labels, path, provenance=provenance)
    if source is None:
        raise ParameterError(f"{path}: writing a DICOM SEG needs the source DICOM series it was drawn on "
                             "(source=...; CLI: --source)")
    from medimg.io.dicom.seg import write_seg

    names = dict(segment_names or {})
    return write_with_sidecar(labels, path, lambda tmp: write_seg(labels, source, tmp, segment_names=names),
                              provenance=provenance, capture_warnings=True)
