"""Reading and writing images: DICOM series and files, NIfTI, NRRD, MetaImage, PNG/JPEG.

``read(path)`` takes a file or a folder and returns one :class:`~medimg.Image`;
``write(image, path)`` picks the format from the extension and writes atomically.
For folders with several series, use :func:`medimg.io.dicom.scan` and
:func:`medimg.io.dicom.read_series`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from medimg.core.files import full_suffix
from medimg.core.image import Image
from medimg.errors import EmptyInputError, FileFormatError, UnsupportedFormatError
from medimg.io.formats import ITK_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES, read_file, write_file

__all__ = ["read", "write", "READ_SUFFIXES", "WRITE_SUFFIXES"]

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
    """
    from medimg.io import dicom

    path = Path(path)
    if not path.exists():
        raise FileFormatError(path, "no such file or folder")
    if path.is_dir():
        return dicom.read_dicom(path, series_uid=series_uid, on_irregular=on_irregular)
    suffix = full_suffix(path)
    if suffix in NIFTI_SUFFIXES + ITK_SUFFIXES + RASTER_SUFFIXES:
        return read_file(path)
    if path.stat().st_size == 0:
        raise EmptyInputError(f"{path}: file is empty")
    return dicom.read_dicom(path, series_uid=series_uid, on_irregular=on_irregular)


def write(image: Image, path: str | Path) -> Path:
    """Write ``image`` to ``path``; the format follows the extension (.nii, .nii.gz, .nrrd, .mha, .png).

    The file is written under a temporary name and renamed, so ``path`` is never half-written.
    """
    path = Path(path)
    suffix = full_suffix(path)
    if suffix not in WRITE_SUFFIXES:
        msg = f"{path}: cannot write extension {suffix or '(none)'!r}; use one of {', '.join(WRITE_SUFFIXES)}"
        raise UnsupportedFormatError(msg)
    return write_file(image, path)
