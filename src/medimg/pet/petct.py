"""PET and CT of one patient together: one grid, and a CT-defined mask for PET metrics.

PET/CT scanners write both series in one Frame of Reference, so the images' LPS coordinates
agree and either can be resampled onto the other's grid without registration (the fusion view
and registration for other pairs are :mod:`medimg.registration`'s). Resampling is
:func:`medimg.filters.resample_to`, the package's one resampler: linear for the PET (convert it
to SUV first, since per-slice factors do not commute with interpolation), nearest neighbour for
label maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from medimg.core.image import Image
from medimg.errors import ParameterError
from medimg.pet.metrics import lesion_metrics

__all__ = ["read_pet_ct", "check_same_patient", "onto_grid", "metrics_with_mask"]


def check_same_patient(pet: Image, ct: Image, *, allow_other_frame: bool = False) -> list[str]:
    """Check that ``pet`` and ``ct`` are one patient in one frame of reference.

    Parameters
    ----------
    pet, ct
        Images read from DICOM (their ``meta`` holds Patient ID and Frame of Reference UID).
    allow_other_frame
        Accept different Frame of Reference UIDs (0020,0052) (the images must then be
        registered first; their coordinates are used as they are).

    Returns
    -------
    list of str
        Notes on what could not be checked (an attribute absent).

    Raises
    ------
    ParameterError
        Different Patient IDs (0010,0020), or different Frames of Reference without
        ``allow_other_frame``.
    """
    notes = []
    for key, tag in (("PatientID", "Patient ID (0010,0020)"), ("FrameOfReferenceUID", "Frame of Reference UID (0020,0052)")):
        a, b = pet.meta.get(key), ct.meta.get(key)
        if a in (None, "") or b in (None, ""):
            notes.append(f"{tag} absent in the {'PET' if a in (None, '') else 'CT'}: not checked")
            continue
        if a != b:
            if key == "PatientID":
                raise ParameterError(f"the PET is patient {a!r} but the CT is patient {b!r} ({tag})")
            if not allow_other_frame:
                msg = (f"the PET and the CT have different {tag} ({a} vs {b}): their coordinates need not agree; "
                       "register them first, or pass allow_other_frame=True (--allow-other-frame) if they do")
                raise ParameterError(msg)
            notes.append(f"different {tag}: coordinates used as they are (allow_other_frame)")
    return notes


def read_pet_ct(
    pet_path: str | Path,
    ct_path: str | Path,
    *,
    pet_series: str | None = None,
    ct_series: str | None = None,
    allow_other_frame: bool = False,
) -> tuple[Image, Image]:
    """Read a PET series and a CT series of one patient (checked by :func:`check_same_patient`).

    Returns the PET (with every image's PET attributes, :func:`medimg.pet.read_pet`) and the CT;
    the notes of the check are in both images' ``meta["warnings"]``.
    """
    from medimg import io
    from medimg.pet.reading import read_pet

    pet = read_pet(pet_path, series_uid=pet_series)
    ct = io.read(ct_path, series_uid=ct_series)
    if ct.meta.get("Modality") not in (None, "CT"):
        raise ParameterError(f"{ct_path}: Modality (0008,0060) is {ct.meta.get('Modality')!r}, not CT")
    notes = check_same_patient(pet, ct, allow_other_frame=allow_other_frame)
    for image in (pet, ct):
        if notes:
            image.meta["warnings"] = [*image.meta.get("warnings", []), *notes]
    return pet, ct


def onto_grid(image: Image, reference: Image, *, interpolator: Literal["linear", "bspline", "nearest"] | None = None) -> Image:
    """Resample ``image`` onto ``reference``'s grid with :func:`medimg.filters.resample_to`.

    Label maps use nearest neighbour; intensities linear unless ``interpolator`` says otherwise.
    Voxels outside ``image`` become 0. ``image``'s meta (SUV units included) is kept.
    """
    from medimg.filters import resample_to

    return resample_to(image, reference=reference, interpolator=interpolator)


def metrics_with_mask(
    suv: Image,
    mask: Image,
    *,
    grid: Literal["pet", "mask"] = "pet",
    label: int = 1,
    **kwargs: Any,
) -> dict[str, Any]:
    """Lesion metrics of ``suv`` in a mask drawn on another grid (a CT's).

    Parameters
    ----------
    suv
        3-D SUV image.
    mask
        Label map on any grid of the same frame of reference (e.g. the CT's).
    grid
        ``"pet"``: the mask is resampled onto the PET grid (nearest neighbour); ``"mask"``: the
        SUV image is resampled onto the mask's grid (linear). Ignored when the grids agree.
    label
        The lesion's label.
    **kwargs
        Passed to :func:`medimg.pet.lesion_metrics`.

    Returns
    -------
    dict
        :func:`~medimg.pet.lesion_metrics`, plus ``grid``: which grid the metrics were computed on.
    """
    if grid not in ("pet", "mask"):
        from medimg.errors import UnknownNameError

        raise UnknownNameError("grid", str(grid), ("pet", "mask"))
    if suv.same_grid(mask):
        out = lesion_metrics(suv, mask, label=label, **kwargs)
        out["grid"] = "pet (same as the mask's)"
        return out
    if not mask.is_label:
        raise ParameterError(f"mask must be a label map (integer), got {mask.dtype}")
    if grid == "pet":
        out = lesion_metrics(suv, onto_grid(mask, suv), label=label, **kwargs)
        out["grid"] = "pet (mask resampled, nearest neighbour)"
    else:
        out = lesion_metrics(onto_grid(suv, mask, interpolator="linear"), mask, label=label, **kwargs)
        out["grid"] = "mask (SUV resampled, linear)"
    return out
