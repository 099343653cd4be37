"""Non-DICOM formats: NIfTI (nibabel), NRRD / MHA / MHD (SimpleITK), PNG / JPEG / TIFF (Pillow).

NIfTI goes through :meth:`Image.from_nibabel` / :meth:`Image.to_nibabel`, the one place where
RAS <-> LPS happens. NRRD and MetaImage are read and written by ITK, whose geometry is LPS
already. PNG/JPEG are 2-D images with no patient geometry (``has_patient_geometry=False``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medimg.core.files import atomic_path, full_suffix
from medimg.core.image import Image
from medimg.errors import FileFormatError, UnsupportedFormatError

__all__ = ["NIFTI_SUFFIXES", "ITK_SUFFIXES", "RASTER_SUFFIXES", "read_file", "write_file"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_file(path: Path) -> Image:
    """Read one NIfTI / NRRD / MetaImage / PNG / JPEG file (by extension)."""
    suffix = full_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return _read_nifti(path)
    if suffix in ITK_SUFFIXES:
        return _read_itk(path)
    if suffix in RASTER_SUFFIXES:
        return _read_raster(path)
    msg = f"{path}: unsupported file extension {suffix!r}"
    raise UnsupportedFormatError(msg)


def write_file(image: Image, path: Path) -> Path:
    """Write ``image`` to NIfTI / NRRD / MetaImage / PNG (by extension), atomically."""
    suffix = full_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        import nibabel as nib

        with atomic_path(path) as tmp:
            nib.save(image.to_nibabel(), tmp)
    elif suffix in (".nrrd", ".mha"):
        import SimpleITK as sitk

        with atomic_path(path) as tmp:
            sitk.WriteImage(image.to_sitk(), str(tmp), useCompression=True)
    elif suffix in (".png",):
        _write_png(image, path)
    else:
        msg = (
            f"{path}: cannot write extension {suffix!r}; "
            "use .nii, .nii.gz, .nrrd, .mha or .png"
        )
        raise UnsupportedFormatError(msg)
    return path


def _read_nifti(path: Path) -> Image:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        image = Image.from_nibabel(img, meta={"source_format": "nifti"})
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError) as err:
        raise FileFormatError(path, f"not a readable NIfTI file ({err})") from err
    if isinstance(img, nib.Nifti1Image):
        codes = img.get_qform(coded=True)[1], img.get_sform(coded=True)[1]
        if codes == (0, 0):
            image.meta["warnings"] = ["NIfTI has qform_code = sform_code = 0: geometry is a guess"]
    return image


def _read_itk(path: Path) -> Image:
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise FileFormatError(path, f"ITK cannot read it ({first})") from err
    fmt = "nrrd" if full_suffix(path) in (".nrrd", ".nhdr") else "metaimage"
    return Image.from_sitk(img, meta={"source_format": fmt})


def _read_raster(path: Path) -> Image:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(path) as pil:
            mode = pil.mode
            if mode == "P":
                pil = pil.convert("RGBA" if "transparency" in pil.info else "RGB")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                pil = pil.convert("RGB")
            array = np.asarray(pil)
    except (UnidentifiedImageError, OSError) as err:
        raise FileFormatError(path, f"not a readable image ({err})") from err
    channel_axis = -1 if array.ndim == 3 else None
    return Image(
        array,
        meta={"source_format": full_suffix(path).lstrip("."), "photometric": mode},
        channel_axis=channel_axis,
        has_patient_geometry=False,
    )


def _write_png(image: Image, path: Path) -> None:
    from PIL import Image as PILImage

    if image.spatial_ndim != 2:
        msg = f"{path}: PNG holds a 2-D image; this image is {image.spatial_ndim}-D (take a slice first)"
        raise UnsupportedFormatError(msg)
    array = image.array
    if array.dtype not in (np.uint8, np.uint16) or (array.ndim == 3 and array.dtype != np.uint8):
        msg = (
            f"{path}: PNG stores uint8 (grey or RGB) or uint16 (grey) pixels; got {array.dtype}. "
            "Window or rescale the image first."
        )
        raise UnsupportedFormatError(msg)
    with atomic_path(path) as tmp:
        PILImage.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
