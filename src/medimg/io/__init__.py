"""Reading and writing images: DICOM series and files, NIfTI, NRRD, MetaImage, PNG/JPEG.

``read(path)`` takes a file or a folder and returns one :class:`~medimg.Image`;
``write(image, path)`` picks the format from the extension and writes atomically, with a JSON
provenance sidecar beside the image (``out.nii.gz`` -> ``out.json``, :mod:`medimg.io.sidecar`)
that ``read`` uses to restore ``meta["history"]``. For folders with several series, use
:func:`medimg.io.dicom.scan` and :func:`medimg.io.dicom.read_series`. Label maps, DICOM SEG
and RTSTRUCT included: :func:`read_labels` and :func:`write_labels`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from medimg.core.files import full_suffix
from medimg.core.image import Image
from medimg.core.provenance import Manifest
from medimg.errors import EmptyInputError, FileFormatError, UnsupportedFormatError
from medimg.io.formats import ITK_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES, read_file, write_file
from medimg.io.labels import LABEL_WRITE_SUFFIXES, read_labels, write_labels
from medimg.io.sidecar import read_sidecar, sidecar_path

__all__ = ["read", "write", "read_labels", "write_labels", "read_sidecar", "sidecar_path", "READ_SUFFIXES",
           "WRITE_SUFFIXES", "LABEL_WRITE_SUFFIXES"]

READ_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES + RASTER_SUFFIXES + (".dcm", "(none: DICOM)")
WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".png")


def read(
    path: str | Path,
    *,
    series_uid: str | None = None,
    on_irregular: Literal["error", "resample"] = "error",
) -> Image:
    """Read a file or a DICOM folder into one :class:`Image`.

    Parameters
    ----------
    path
        A NIfTI / NRRD / MHA / PNG / JPEG file, a DICOM file, or a folder of DICOM files
        (searched recursively).
    series_uid
        Which series to read when a folder holds several (otherwise :class:`MultipleSeriesError`
        lists them).
    on_irregular
        What to do with a DICOM series whose slices are not equally spaced or are sheared by
        gantry tilt: ``"error"`` (default) raises; ``"resample"`` resamples onto a regular grid
        along the slice normal (linear) and records it in ``meta["warnings"]``.

    Returns
    -------
    Image
        The image. When a file has a provenance sidecar written by medimg (``out.json`` beside
        ``out.nii.gz``) that matches it, ``meta["history"]`` is restored from it, its
        allow-listed meta keys fill those the file lacks, and ``meta["sidecar"]`` names it; a
        sidecar that no longer matches the file is ignored with a warning in
        ``meta["warnings"]``.
    """
    from medimg.io.sidecar import attach_sidecar

    path = Path(path)
    if not path.exists():
        raise FileFormatError(path, "no such file or folder")
    suffix = full_suffix(path)
    if not path.is_dir() and suffix in NIFTI_SUFFIXES + ITK_SUFFIXES + RASTER_SUFFIXES:
        return attach_sidecar(read_file(path), path)
    from medimg.io import dicom  # only for DICOM (start-up of a command)

    if path.is_dir():
        return dicom.read_dicom(path, series_uid=series_uid, on_irregular=on_irregular)
    if path.stat().st_size == 0:
        raise EmptyInputError(f"{path}: file is empty")
    return attach_sidecar(dicom.read_dicom(path, series_uid=series_uid, on_irregular=on_irregular), path)


def write(image: Image, path: str | Path, *, provenance: Manifest | None = None, sidecar: bool = True) -> Path:
    """Write ``image`` to ``path``; the format follows the extension (.nii, .nii.gz, .nrrd, .mha, .png).

    The file is written under a temporary name and renamed, so ``path`` is never half-written.

    Parameters
    ----------
    image
        The image; it is not modified.
    path
        The output file.
    provenance
        The run that produced the image (command, command line, every resolved parameter,
        inputs with their SHA-256, seed), recorded in the sidecar. ``None``: the sidecar holds
        the software, ``meta["history"]`` and the allow-listed meta only.
    sidecar
        Write the JSON provenance sidecar beside the image (``out.nii.gz`` -> ``out.json``;
        see :mod:`medimg.io.sidecar` for the naming rule and what it holds). The image and
        its sidecar are written as one unit.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    UnsupportedFormatError
        An extension medimg does not write, or pixels the format cannot hold.
    UserInputError
        The sidecar name is taken by the sidecar of another image (``out.json`` of
        ``out.nii.gz`` when writing ``out.nrrd``).
    """
    from medimg.io.sidecar import write_with_sidecar

    path = Path(path)
    suffix = full_suffix(path)
    if suffix not in WRITE_SUFFIXES:
        msg = f"{path}: cannot write extension {suffix or '(none)'!r}; use one of {', '.join(WRITE_SUFFIXES)}"
        raise UnsupportedFormatError(msg)
    if not sidecar:
        return write_file(image, path)
    if suffix in NIFTI_SUFFIXES:  # one pass; the file's SHA-256 comes from the bytes written
        from medimg.io.nifti import write_nifti

        return write_with_sidecar(image, path, lambda tmp: write_nifti(image, tmp, gzip=suffix == ".nii.gz"),
                                  provenance=provenance)
    return write_with_sidecar(image, path, lambda tmp: write_file(image, tmp), provenance=provenance)
