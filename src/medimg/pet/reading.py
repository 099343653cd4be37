"""Read a PET DICOM series with the attributes the SUV decision tree needs from every image."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from medimg.core.image import Image
from medimg.errors import ParameterError

__all__ = ["read_pet"]


def read_pet(
    path: str | Path,
    *,
    series_uid: str | None = None,
    on_irregular: Literal["error", "resample"] = "error",
) -> Image:
    """Read a PET series (a DICOM folder or file) into an :class:`~medimg.Image`.

    The DICOM reader fills ``meta["pet"]`` through :func:`medimg.pet.tags.pet_tags`: the
    series-level PET attributes and, for each slice, its acquisition time, frame timing,
    rescale and the vendor private SUV values. Values are activity in the file's Units
    (Bq/ml for BQML) after the Modality LUT; convert them with :func:`medimg.pet.to_suv`.

    Parameters
    ----------
    path
        A DICOM folder (searched recursively) or file.
    series_uid
        The Series Instance UID (or ``UID#n`` key) when the folder holds several series.
    on_irregular
        ``"error"`` (default) or ``"resample"`` for series with uneven slice spacing; a resampled
        series keeps per-image factors only when they are the same for every image.

    Returns
    -------
    Image
        The PET volume (z, y, x) with ``meta["pet"]``.

    Raises
    ------
    ParameterError
        The series is not PET (Modality (0008,0060) is not PT).
    FileFormatError, SeriesError, MultipleSeriesError
        As for :func:`medimg.io.read`.
    """
    from medimg import io

    image = io.read(path, series_uid=series_uid, on_irregular=on_irregular)
    if image.meta.get("Modality") != "PT" or "pet" not in image.meta:
        msg = (f"{path}: Modality (0008,0060) is {image.meta.get('Modality')!r}, not PT; "
               "choose the PET series (--series UID)")
        raise ParameterError(msg)
    return image
