"""PyRadiomics compatibility: PyRadiomics's extraction, value for value, from its own parameter files.

:func:`extract_pyradiomics` reproduces ``radiomics.featureextractor.RadiomicsFeatureExtractor.execute``
(PyRadiomics 3.x): its mask checks, normalisation, resampling, image types (Original, LoG, Wavelet,
Square, SquareRoot, Logarithm, Exponential, Gradient), cropping, binning and the feature classes
``firstorder``, ``shape``, ``glcm``, ``glrlm``, ``glszm``, ``gldm`` and ``ngtdm``
(:mod:`medimg.features._pyradiomics_calc`), and names each value as PyRadiomics does
(``original_firstorder_Mean``, ``log-sigma-2-0-mm-3D_glcm_Contrast``, ``wavelet-LLH_glrlm_RunEntropy``).

:func:`load_params` reads a PyRadiomics parameter file (YAML/JSON with ``setting``, ``imageType``,
``featureClass``, ``voxelSetting``); a key medimg does not honour is an error that names it.
The PyRadiomics default (binWidth 25, Original, 3-D, the seven classes above: 107 features) is
:data:`DEFAULT_PARAMS`, also the ``pyradiomics`` preset of :mod:`medimg.features.config`.

The filters use what PyRadiomics uses (SimpleITK's recursive-Gaussian LoG and gradient magnitude,
PyWavelets's ``swtn``), so their responses are the same arrays; see ``docs/pyradiomics.md`` for every
difference from the IBSI and what the preset does about it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.crop import label_box
from medimg.core.image import Image
from medimg.core.jit import tiered, use_compiled
from medimg.errors import FileFormatError, ParameterError, did_you_mean
from medimg.features import _pyradiomics_calc as calc

__all__ = ["DEFAULT_PARAMS", "SETTINGS", "IMAGE_TYPES", "load_params", "check_params", "extract_pyradiomics",
           "pyradiomics_name_info", "IBSI_EQUIVALENT"]

#: PyRadiomics's default parameter file, as medimg honours it.
DEFAULT_PARAMS: dict[str, Any] = {
    "setting": {"binWidth": 25, "label": 1},
    "imageType": {"Original": {}},
    "featureClass": {name: None for name in calc.CLASSES},
}

#: Settings honoured (``setting`` section, or per image type), with their PyRadiomics defaults.
SETTINGS: dict[str, Any] = {
    "binWidth": 25, "binCount": None, "label": 1, "label_channel": 0,
    "normalize": False, "normalizeScale": 1, "removeOutliers": None,
    "resampledPixelSpacing": None, "interpolator": "sitkBSpline", "padDistance": 5, "preCrop": False,
    "voxelArrayShift": 0, "force2D": False, "force2Ddimension": 0,
    "distances": [1], "symmetricalGLCM": True, "weightingNorm": None, "gldm_a": 0,
    "minimumROIDimensions": 2, "minimumROISize": None, "geometryTolerance": None, "correctMask": False,
    "additionalInfo": True, "enableCExtensions": True,
    "resegmentRange": None, "resegmentMode": "absolute", "resegmentShape": False,
    "sigma": [], "wavelet": "coif1", "start_level": 0, "level": 1, "gradientUseSpacing": True,
}
#: Image types honoured.
IMAGE_TYPES = ("Original", "LoG", "Wavelet", "Square", "SquareRoot", "Logarithm", "Exponential", "Gradient")
_SECTIONS = ("setting", "imageType", "featureClass", "voxelSetting")

_INTERPOLATORS = ("sitkNearestNeighbor", "sitkLinear", "sitkBSpline", "sitkGaussian", "sitkLabelGaussian",
                  "sitkHammingWindowedSinc", "sitkCosineWindowedSinc", "sitkWelchWindowedSinc",
                  "sitkLanczosWindowedSinc", "sitkBlackmanWindowedSinc")


# ------------------------------------------------------------------------------------- parameter files

def check_params(params: Mapping[str, Any], *, where: str = "pyradiomics params") -> dict[str, Any]:
    """Validate a PyRadiomics parameter mapping; return it normalised (every section present).

    Raises
    ------
    ParameterError
        A section, setting, image type, feature class or feature medimg does not honour (named),
        or a value of the wrong kind.
    """
    if not isinstance(params, Mapping):
        raise ParameterError(f"{where}: a PyRadiomics parameter file is a mapping, got {type(params).__name__}")
    for key in params:
        if key not in _SECTIONS:
            raise ParameterError(f"{where}: unknown section {key!r}{did_you_mean(str(key), _SECTIONS)}; "
                                 f"sections: {', '.join(_SECTIONS)}")
    if params.get("voxelSetting"):
        raise ParameterError(f"{where}: 'voxelSetting' (voxel-based feature maps) is not supported by medimg's "
                             "PyRadiomics mode; remove the section")
    setting = dict(params.get("setting") or {})
    _check_settings(setting, f"{where}: setting")
    image_types = params.get("imageType")
    image_types = {"Original": {}} if image_types is None else dict(image_types)
    for name, custom in image_types.items():
        if name not in IMAGE_TYPES:
            raise ParameterError(f"{where}: image type {name!r} is not supported{did_you_mean(str(name), IMAGE_TYPES)}; "
                                 f"supported: {', '.join(IMAGE_TYPES)}")
        if custom is not None and not isinstance(custom, Mapping):
            raise ParameterError(f"{where}: imageType.{name} must be a mapping of settings, got {custom!r}")
        _check_settings(dict(custom or {}), f"{where}: imageType.{name}")
    classes = params.get("featureClass")
    if classes is None and setting.get("force2D"):
        raise ParameterError(f"{where}: with force2D and no featureClass PyRadiomics also computes shape2D, "
                             "which medimg does not; list the feature classes in featureClass")
    classes = {c: None for c in calc.CLASSES} if classes is None else dict(classes)
    for cls, feats in classes.items():
        if cls not in calc.FEATURE_NAMES:
            raise ParameterError(f"{where}: feature class {cls!r} is not supported{did_you_mean(str(cls), calc.CLASSES)}; "
                                 f"supported: {', '.join(calc.CLASSES)}")
        if feats:
            known = calc.FEATURE_NAMES[cls] + calc.DEPRECATED.get(cls, ())
            for feat in feats:
                if feat not in known:
                    raise ParameterError(f"{where}: featureClass.{cls}: feature {feat!r} is not computed by medimg's "
                                         f"PyRadiomics mode{did_you_mean(str(feat), known)}")
    return {"setting": setting, "imageType": image_types, "featureClass": classes}


def _check_settings(setting: Mapping[str, Any], where: str) -> None:
    for key, value in setting.items():
        if key not in SETTINGS:
            raise ParameterError(f"{where}: setting {key!r} is not honoured by medimg{did_you_mean(str(key), SETTINGS)}")
        if key == "interpolator" and value not in _INTERPOLATORS and not isinstance(value, int):
            raise ParameterError(f"{where}: interpolator {value!r} unknown; one of {', '.join(_INTERPOLATORS)}")
        if key == "weightingNorm" and value not in (None, "manhattan", "euclidean", "infinity", "no_weighting"):
            raise ParameterError(f"{where}: weightingNorm {value!r} unknown")
        if key == "correctMask" and value:
            raise ParameterError(f"{where}: correctMask: true (resampling a mask onto another grid) is not supported; "
                                 "give the mask on the image's grid")
        if key == "label_channel" and value not in (0, None):
            raise ParameterError(f"{where}: label_channel {value!r}: vector (multi-channel) masks are not supported")
        if key == "resegmentMode" and value not in ("absolute", "relative", "sigma"):
            raise ParameterError(f"{where}: resegmentMode {value!r} unknown")
        if key == "binCount" and value is not None and (not isinstance(value, int) or value < 1):
            raise ParameterError(f"{where}: binCount must be a positive integer, got {value!r}")
        if key == "binWidth" and not (isinstance(value, int | float) and value > 0):
            raise ParameterError(f"{where}: binWidth must be > 0, got {value!r}")
        if key == "distances" and not (isinstance(value, list | tuple) and value
                                       and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                               for d in value)):
            raise ParameterError(f"{where}: distances must be a list of integers >= 1 (as PyRadiomics's schema), "
                                 f"got {value!r}")


def load_params(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read (YAML or JSON file) and validate a PyRadiomics parameter file; see :func:`check_params`."""
    if isinstance(source, Mapping):
        return check_params(source)
    path = Path(source)
    if not path.is_file():
        raise FileFormatError(path, "no such PyRadiomics parameter file")
    try:
        import yaml

        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError) as err:
        raise FileFormatError(path, f"cannot parse the parameter file: {err}") from err
    except Exception as err:  # yaml.YAMLError
        raise FileFormatError(path, f"cannot parse the parameter file: {err}") from err
    return check_params(data or {}, where=str(path))


# ----------------------------------------------------------------------------------------- extraction

#: :data:`DEFAULT_PARAMS` checked once (read only).
_DEFAULT_CHECKED: dict[str, Any] = check_params(DEFAULT_PARAMS)


class _Vol:
    """An array (z, y, x) with its geometry: the SimpleITK image's fields, without SimpleITK."""

    __slots__ = ("array", "spacing", "origin", "direction")

    def __init__(self, array: np.ndarray, spacing: Any, origin: Any, direction: Any) -> None:
        self.array = array
        self.spacing = np.asarray(spacing, dtype=float)  # (x, y, z)
        self.origin = np.asarray(origin, dtype=float)
        self.direction = np.asarray(direction, dtype=float).reshape(3, 3)

    @classmethod
    def from_image(cls, image: Image) -> _Vol:
        arr = np.asarray(image.array)
        if arr.ndim == 2:
            arr = arr[None]
        return cls(arr, image.spacing, image.origin, image.direction)

    @classmethod
    def from_sitk(cls, img: Any) -> _Vol:
        import SimpleITK as sitk

        return cls(sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin(), img.GetDirection())

    def to_sitk(self, array: np.ndarray | None = None) -> Any:
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(self.array if array is None else array)
        img.SetSpacing(tuple(float(v) for v in self.spacing))
        img.SetOrigin(tuple(float(v) for v in self.origin))
        img.SetDirection(tuple(float(v) for v in self.direction.ravel()))
        return img

    def crop(self, lo: np.ndarray, hi: np.ndarray, array: np.ndarray | None = None) -> _Vol:
        """Crop to index bounds (z, y, x) ``lo``..``hi`` inclusive; origin moved as SimpleITK's crop."""
        arr = self.array if array is None else array
        sl = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi, strict=True))
        origin = self.origin + self.direction @ (np.asarray(lo[::-1], dtype=float) * self.spacing)
        return _Vol(arr[sl], self.spacing, origin, self.direction)


def _bbox(roi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index bounds (inclusive) of the non-empty boolean ``roi``."""
    coords = np.unravel_index(np.flatnonzero(roi), roi.shape)
    return np.asarray([c.min() for c in coords]), np.asarray([c.max() for c in coords])


def _label_box(labels: np.ndarray, lab: Any = True) -> tuple[np.ndarray, np.ndarray] | None:
    """Index bounds (inclusive, (z, y, x)) of ``labels == lab`` in a 3-D array (``lab`` True: of a
    boolean ROI); None when it is empty (:func:`medimg.core.crop.label_box`)."""
    found = label_box(labels, lab)
    return None if found is None else found[:2]


def _check_mask(roi: np.ndarray, s: Mapping[str, Any],
                box: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PyRadiomics's checkMask: bounding box, at least ``minimumROIDimensions`` dimensions > 1 voxel.
    ``box``: the bounds of ``roi`` when known (:func:`_label_box`); ``roi`` is then only counted
    (``minimumROISize``) and may be its crop to the box."""
    if box is None:
        box = _label_box(roi)
    if box is None:
        raise ParameterError(f"label {s.get('label', 1)} not present in the mask")
    lo, hi = box
    ndims = int(np.sum(hi - lo + 1 > 1))
    if ndims == 0:
        raise ParameterError("mask only contains 1 segmented voxel! Cannot extract features for a single voxel "
                             "(PyRadiomics refuses it too)")
    min_dims = s.get("minimumROIDimensions", 2)
    if ndims < min_dims:
        raise ParameterError(f"mask has too few dimensions (number of dimensions {ndims}, minimum required {min_dims})")
    min_size = s.get("minimumROISize")
    if min_size is not None and int(roi.sum()) <= min_size:
        raise ParameterError(f"Size of the ROI is too small (minimum size: {min_size}, ROI size: {int(roi.sum())})")
    return lo, hi


def _normalize(vol: _Vol, s: Mapping[str, Any]) -> _Vol:
    import SimpleITK as sitk

    img = sitk.Normalize(vol.to_sitk())
    outliers = s.get("removeOutliers")
    if outliers is not None:
        arr = sitk.GetArrayFromImage(img)
        arr[arr > outliers] = outliers
        arr[arr < -outliers] = -outliers
        new = sitk.GetImageFromArray(arr)
        new.CopyInformation(img)
        img = new
    img = img * s.get("normalizeScale", 1)
    return _Vol.from_sitk(img)


def _resample(vol: _Vol, mask: _Vol, s: Mapping[str, Any]) -> tuple[_Vol, _Vol]:
    """PyRadiomics's resampleImage: a grid of the new spacing over the ROI's bounding box plus
    ``padDistance`` voxels, origins aligned as it aligns them; image with ``interpolator``, mask
    nearest neighbour."""
    import SimpleITK as sitk

    label = int(s.get("label", 1))
    pad = s.get("padDistance", 5)
    mask_spacing = mask.spacing
    new_spacing = np.asarray(s["resampledPixelSpacing"], dtype=float)
    if len(new_spacing) != 3:
        raise ParameterError(f"resampledPixelSpacing needs 3 values (x, y, z), got {list(new_spacing)}")
    new_spacing = np.where(new_spacing == 0, mask_spacing, new_spacing)
    roi = mask.array == label
    lo, hi = _bbox(roi)
    bb_index = lo[::-1]
    bb_size = (hi - lo + 1)[::-1]
    size = np.asarray(mask.array.shape[::-1])
    new_spacing = np.where(bb_size != 1, new_spacing, mask_spacing)
    if np.allclose(vol.spacing, new_spacing):
        clo = np.maximum(lo - pad, 0)
        chi = np.minimum(hi + pad, np.asarray(mask.array.shape) - 1)
        return vol.crop(clo, chi), mask.crop(clo, chi)
    ratio = mask_spacing / new_spacing
    new_lo = np.floor((bb_index - 0.5) * ratio - pad)
    new_hi = np.ceil((bb_index + bb_size - 0.5) * ratio + pad)
    max_hi = np.ceil(size * ratio) - 1
    new_lo = np.where(new_lo < 0, 0, new_lo)
    new_hi = np.where(new_hi > max_hi, max_hi, new_hi)
    new_size = np.array(new_hi - new_lo + 1, dtype=int).tolist()
    orig_lo = new_lo / ratio
    origin_index = 0.5 * (new_spacing - mask_spacing) / mask_spacing + orig_lo
    new_origin = mask.origin + mask.direction @ (origin_index * mask_spacing)
    interp = s.get("interpolator", "sitkBSpline")
    interp = getattr(sitk, interp) if isinstance(interp, str) else int(interp)
    sitk_img = vol.to_sitk()
    sitk_mask = mask.to_sitk()
    rif = sitk.ResampleImageFilter()
    rif.SetOutputSpacing(tuple(float(v) for v in new_spacing))
    rif.SetOutputDirection(tuple(float(v) for v in mask.direction.ravel()))
    rif.SetSize([int(v) for v in new_size])
    rif.SetOutputOrigin(tuple(float(v) for v in new_origin))
    rif.SetOutputPixelType(sitk_img.GetPixelID())
    rif.SetInterpolator(interp)
    out_img = rif.Execute(sitk_img)
    rif.SetOutputPixelType(sitk_mask.GetPixelID())
    rif.SetInterpolator(sitk.sitkNearestNeighbor)
    out_mask = rif.Execute(sitk_mask)
    return _Vol.from_sitk(out_img), _Vol.from_sitk(out_mask)


def _resegment(image: np.ndarray, roi: np.ndarray, s: Mapping[str, Any]) -> np.ndarray:
    rng = s["resegmentRange"]
    mode = s.get("resegmentMode", "absolute")
    if not 1 <= len(rng) <= 2:
        raise ParameterError(f"resegmentRange needs 1 or 2 values, got {rng!r}")
    vals = image[roi]
    if mode == "absolute":
        th = sorted(rng)
    elif mode == "relative":
        th = [np.max(vals) * t for t in sorted(rng)]
    else:
        th = [np.mean(vals) + np.std(vals) * t for t in sorted(rng)]
    out = roi.copy()
    out[out] = image[out] >= th[0]
    if len(th) == 2:
        out[out] = image[out] <= th[1]
    if out.sum() <= 1:
        raise ParameterError(f"Resegmentation excluded too many voxels (retained {int(out.sum())} voxel(s))")
    return out


# ----------------------------------------------------------------------------------------- image types

#: How far (in sigmas, per axis) SimpleITK's recursive-Gaussian LoG is computed beyond the ROI's
#: bounding box. Its response inside the box then equals the whole image's to the float32 bit:
#: measured on brain1 (sigma 1 and 3 mm): 16 sigmas leave 1-ulp differences in a few voxels, 20 none.
LOG_REACH_SIGMAS = 24.0


def _crop_bounds(lo: np.ndarray, hi: np.ndarray, margin: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    return np.maximum(lo - margin, 0), np.minimum(hi + margin, np.asarray(shape) - 1)


def _image_types(vol: _Vol, name: str, s: dict[str, Any], lo: np.ndarray,
                 hi: np.ndarray) -> Iterator[tuple[np.ndarray, str, dict[str, Any]]]:
    """PyRadiomics's ``get<name>Image`` generators: (array cropped to the index bounds ``lo``..``hi``
    (z, y, x, inclusive), image type name, settings).

    Each filter response is the whole image's inside the box, computed on the box plus the part of
    the image it depends on: the wavelet (a periodic FIR filter) and the gradient exactly, on the
    box plus the filter length (indices taken modulo the padded image, as PyRadiomics's periodic
    extension does); the LoG on the box plus :data:`LOG_REACH_SIGMAS` sigmas per axis (or the whole
    image where that reaches its borders: the same boundary as PyRadiomics)."""
    arr = vol.array
    sl = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi, strict=True))
    if name == "Original":
        yield arr[sl], "original", s
    elif name == "LoG":
        size = np.asarray(arr.shape[::-1])
        if np.min(size) < 4:
            return
        for sigma in s.get("sigma", []):
            if sigma > 0.0 and np.all(size >= np.ceil(sigma / vol.spacing) + 1):
                margin = np.ceil(LOG_REACH_SIGMAS * sigma / vol.spacing[::-1]).astype(int) + 2
                clo, chi = _crop_bounds(lo, hi, margin, arr.shape)
                yield _log_box(vol, float(sigma), lo, hi, clo, chi), "log-sigma-{}-mm-3D".format(
                    str(sigma).replace(".", "-")), s
    elif name == "Wavelet":
        yield from _wavelet(arr, s, lo, hi)
    elif name in ("Square", "SquareRoot", "Logarithm", "Exponential"):
        mx = _max_abs(arr)  # over the whole image, as PyRadiomics
        im = arr[sl].astype("float64")
        if name == "Square":
            im = (1 / np.sqrt(mx) * im) ** 2
            yield im, "square", s
        elif name == "SquareRoot":
            pos, neg = im > 0, im < 0
            im[pos] = np.sqrt(im[pos] * mx)
            im[neg] = -np.sqrt(-im[neg] * mx)
            yield im, "squareroot", s
        elif name == "Logarithm":
            im = _signed_log(im)
            # PyRadiomics scales by the whole transformed image's largest magnitude: the transform is
            # odd and increasing in |v|, so that is the transform of the largest |v| (one voxel)
            im = im * (mx / np.max(np.abs(_signed_log(np.array([mx])))))
            yield im, "logarithm", s
        else:
            coeff = np.log(mx) / mx
            yield np.exp(coeff * im), "exponential", s
    elif name == "Gradient":
        yield _gradient_box(vol, lo, hi, bool(s.get("gradientUseSpacing", True))), "gradient", s
    else:  # pragma: no cover - checked by check_params
        raise ParameterError(f"image type {name!r} not supported")


def _gradient_box(vol: _Vol, lo: np.ndarray, hi: np.ndarray, use_spacing: bool) -> np.ndarray:
    """SimpleITK's ``GradientMagnitudeImageFilter`` of the whole image inside the box ``lo..hi``
    (z, y, x, inclusive), float32, in NumPy: as ITK computes it, per axis x, y, z the central
    difference ``g = (-c * v[-1] + 0 * v[0]) + c * v[+1]`` with ``c = 0.5 * (1 / spacing)`` (0.5
    without spacing) in double, the image's edge repeated beyond its border (ITK's zero-flux Neumann
    condition), then ``sqrt((gx^2 + gy^2) + gz^2)`` rounded to float32: the same numbers."""
    arr = vol.array
    clo, chi = _crop_bounds(lo, hi, np.ones(3, dtype=int), arr.shape)
    region = arr[tuple(slice(int(a), int(b) + 1) for a, b in zip(clo, chi, strict=True))].astype(np.float64)
    pad = [(1 - int(a - c), 1 - int(d - b)) for a, b, c, d in zip(lo, hi, clo, chi, strict=True)]
    x = np.pad(region, pad, mode="edge") if any(p != (0, 0) for p in pad) else region
    inner = [slice(1, n - 1) for n in x.shape]
    total = None
    for d in range(3):  # ITK dimension d is NumPy axis 2 - d
        axis = 2 - d
        c = 0.5 * (1.0 / float(vol.spacing[d])) if use_spacing else 0.5
        before, after = list(inner), list(inner)
        before[axis] = slice(0, x.shape[axis] - 2)
        after[axis] = slice(2, x.shape[axis])
        g = (-c) * x[tuple(before)] + 0.0 * x[tuple(inner)]
        g += c * x[tuple(after)]
        g *= g
        total = g if total is None else total + g
    assert total is not None
    return np.sqrt(total).astype(np.float32)


def _max_abs(arr: np.ndarray) -> float:
    """``max(|arr|)`` in float64 (NaN if any is NaN) from the extremes: no float64 copy of the image."""
    return float(np.maximum(abs(float(np.max(arr))), abs(float(np.min(arr)))))


def _signed_log(im: np.ndarray) -> np.ndarray:
    """PyRadiomics's logarithm filter before its scaling: ``sign(v) * log(|v| + 1)`` (float64, in place)."""
    pos, neg = im > 0, im < 0
    im[pos] = np.log(im[pos] + 1)
    im[neg] = -np.log(-(im[neg] - 1))
    return im


def _log_box(vol: _Vol, sigma: float, lo: np.ndarray, hi: np.ndarray, clo: np.ndarray, chi: np.ndarray) -> np.ndarray:
    """SimpleITK's ``LaplacianRecursiveGaussianImageFilter`` (normalised across scale) of the image
    region ``clo``..``chi``, inside the box ``lo``..``hi`` (z, y, x index bounds, inclusive).

    The filter, as ITK composes it: for each axis d (x, y, z), the second-derivative recursive
    Gaussian along d, then the smoothing one along each other axis in increasing order (float32
    between passes), added into a float32 sum as ``sum + term / spacing_d^2``. Each pass filters
    lines along its axis independently, so the passes after the first need only the lines that
    cross the box on the axes already filtered: the same arithmetic, bit for bit, on less data.

    Where compiled kernels are wanted (:mod:`medimg.core.jit`), the same passes run as compiled
    loops (:func:`medimg.features._prad_filter_kernels.log_box`: ITK's recursion reproduced operation
    for operation, the same float32 values) without SimpleITK's copies of the region."""
    from medimg.core.jit import wanted

    if wanted():
        from medimg.features import _prad_filter_kernels as kernels

        return kernels.log_box(vol.array, tuple(float(v) for v in vol.spacing), sigma, clo, chi, lo, hi)
    import SimpleITK as sitk

    region = vol.array[tuple(slice(int(a), int(b) + 1) for a, b in zip(clo, chi, strict=True))]
    box = [slice(int(a - c), int(b - c) + 1) for a, b, c in zip(lo, hi, clo, strict=True)]
    spacing = tuple(float(v) for v in vol.spacing)
    source = sitk.GetImageFromArray(np.ascontiguousarray(region))
    source.SetSpacing(spacing)
    gauss = sitk.RecursiveGaussianImageFilter()
    gauss.SetSigma(sigma)
    gauss.SetNormalizeAcrossScale(True)

    def recursive(img: Any, order: int, itk_dim: int) -> Any:
        gauss.SetOrder(order)
        gauss.SetDirection(itk_dim)
        out = gauss.Execute(img)
        return out if out.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(out, sitk.sitkFloat32)

    def lines_through_box(img: Any, axis: int) -> Any:  # keep only the box's range along a NumPy axis
        size, index = list(img.GetSize()), [0, 0, 0]
        size[2 - axis], index[2 - axis] = box[axis].stop - box[axis].start, box[axis].start
        return sitk.RegionOfInterest(img, size, index)

    total = None
    for d in range(3):
        term = recursive(source, 2, d)
        last = 2 - d  # ITK dimension d is NumPy axis 2 - d
        for j in (k for k in range(3) if k != d):
            term = recursive(lines_through_box(term, last), 0, j)  # only the lines through the box go on
            last = 2 - j
        term = lines_through_box(term, last)  # referenced while its buffer is viewed
        scaled = sitk.GetArrayViewFromImage(term).astype(np.float64)
        scaled *= 1.0 / (spacing[d] * spacing[d])
        total = scaled.astype(np.float32) if total is None else (total.astype(np.float64) + scaled).astype(np.float32)
    assert total is not None
    return total


def _wavelet(arr: np.ndarray, s: Mapping[str, Any], lo: np.ndarray,
             hi: np.ndarray) -> Iterator[tuple[np.ndarray, str, dict[str, Any]]]:
    """PyRadiomics's ``_swt3``: ``pywt.swtn`` (level 1, repeated ``start_level + level`` times on the
    approximation) of the image padded to even sizes by wrapping, cropped to ``lo``..``hi``.

    Computed inside the box only (:func:`medimg.features._prad_filter_kernels.swt_box`): the
    stationary transform is a periodic convolution, so each sub-band at the box needs the previous
    approximation only at the positions its filter reaches (indices modulo the padded size); every
    sum is PyWavelets's, in its order and precision, each axis filtered only where the later axes
    read it: the same numbers as on the whole image. Compiled where wanted, else in NumPy."""
    import pywt

    from medimg.core.jit import wanted
    from medimg.features import _prad_filter_kernels as kernels

    axes = [2, 1, 0]
    if s.get("force2D", False):
        axes.remove(s.get("force2Ddimension", 0))
    axes_t = tuple(axes)
    wavelet = pywt.Wavelet(s.get("wavelet", "coif1"))
    level = int(s.get("level", 1))
    start = int(s.get("start_level", 0))
    dtype = np.float32 if arr.dtype in (np.float32, np.float16) else np.float64
    keys, levels, approx = kernels.swt_box(arr, *kernels.swt_filters(wavelet.name, dtype), axes_t, lo, hi,
                                           start, level, compiled=wanted())
    approx_key = "a" * len(axes_t)
    for idx, bands in enumerate(levels, start=1):
        for key, band in zip(keys, bands, strict=True):
            if key != approx_key:
                name = key.replace("a", "L").replace("d", "H")
                yield band, f"wavelet-{name}" if idx == 1 else f"wavelet{idx}-{name}", dict(s)
    low = "L" * len(axes_t)
    yield approx, f"wavelet-{low}" if len(levels) == 1 else f"wavelet{len(levels)}-{low}", dict(s)


# ------------------------------------------------------------------------------------------- features

def _class_features(cls: str, wanted: Any) -> tuple[str, ...]:
    return tuple(wanted) if wanted else calc.FEATURE_NAMES[cls]


def extract_pyradiomics(image: Image | str | Path, mask: Image | str | Path,
                        params: Mapping[str, Any] | str | Path | None = None, *,
                        label: int | None = None, diagnostics: dict[str, float] | None = None,
                        compiled: bool | None = None) -> dict[str, float]:
    """PyRadiomics's features of ``mask == label`` in ``image``, named as PyRadiomics names them.

    Parameters
    ----------
    image, mask
        Intensity image (image units) and label map on the same grid, 3-D (a 2-D image is one slice),
        or their files (as PyRadiomics's ``execute`` takes them). From files, when only the image
        type Original is computed without normalisation or resampling, only the image's slices up to
        the ROI's last are read (the gzip payload of a plain NRRD or a .nii.gz is inflated only that far).
    params
        A PyRadiomics parameter mapping or file (see :func:`load_params`); ``None``: its defaults.
    label
        Overrides ``setting.label``.
    diagnostics
        Filled with the values PyRadiomics gets wrong, each with the correct value
        (``"<image type>_shape_MeshVolume.pyradiomics_negative_corrected"``, ...).
    compiled
        Use the compiled (numba) kernels where they exist: ``None`` automatically (the NumPy path
        until this process has spent as long on it as loading the kernels costs, then compiled; or
        as an enclosing :func:`medimg.core.jit.use_compiled` block says), ``False`` the NumPy path
        (the same values), ``True`` require them (:mod:`medimg.core.jit`).

    Returns
    -------
    dict[str, float]
        ``"<imageType>_<class>_<Feature>"`` -> value, in PyRadiomics's order (shape first, then every
        image type's classes).

    Raises
    ------
    ParameterError
        Invalid parameters, an empty or single-voxel ROI (as PyRadiomics refuses), too few dimensions.
    GeometryMismatchError
        ``image`` and ``mask`` are not on the same grid.
    """
    if compiled is None:
        with tiered():
            return _extract(image, mask, params, label, diagnostics)
    with use_compiled(compiled):
        return _extract(image, mask, params, label, diagnostics)


def _extract(image: Image | str | Path, mask: Image | str | Path, params: Mapping[str, Any] | str | Path | None,
             label: int | None, diagnostics: dict[str, float] | None) -> dict[str, float]:
    p = _DEFAULT_CHECKED if params is None else check_params(
        params if isinstance(params, Mapping) else load_params(params))
    s: dict[str, Any] = dict(p["setting"])
    if label is not None:
        s["label"] = label
    lab = int(s.get("label", 1))
    image, mask, box, roi_pre, scanned = _read_inputs(image, mask, p, s, lab)
    tol = s.get("geometryTolerance")
    image.check_same_grid(mask, **({"tol_mm": float(tol)} if tol else {}))
    vol = _Vol.from_image(image)
    mvol = _Vol.from_image(mask)
    if s.get("force2D") and not 0 <= s.get("force2Ddimension", 0) <= 2:
        raise ParameterError(f"force2Ddimension must be 0, 1 or 2, got {s.get('force2Ddimension')}")
    if box is None and not scanned:
        box = _label_box(mvol.array, lab)
    if box is None:
        raise ParameterError(f"label {lab} not present in the mask")
    if s.get("normalize", False):
        vol = _normalize(vol, s)
    if s.get("resampledPixelSpacing") is not None and s.get("interpolator", "sitkBSpline") is not None:
        vol, mvol = _resample(vol, mvol, s)
        box = _label_box(mvol.array, lab)
        if box is None:
            raise ParameterError(f"label {lab} not present in the mask after resampling")
    elif s.get("preCrop", False):
        lo, hi = _check_mask(mvol.array[_box_slices(*box)] == lab, s, box)
        pad = s.get("padDistance", 0)
        lo = np.maximum(lo - pad, 0)
        hi = np.minimum(hi + pad, np.asarray(mvol.array.shape) - 1)
        vol, mvol = vol.crop(lo, hi), mvol.crop(lo, hi)
        box = (box[0] - lo, box[1] - lo)
    reseg = None
    if s.get("resegmentRange") is not None:
        roi = mvol.array == lab
        lo, hi = _check_mask(roi, s, box)
        reseg = _resegment(vol.array, roi, s)
        lo, hi = _check_mask(reseg, s)
        sl = _box_slices(lo, hi)
        roi_c = roi[sl]
    else:
        roi_c = roi_pre if roi_pre is not None else mvol.array[_box_slices(*box)] == lab
        lo, hi = _check_mask(roi_c, s, box)
        sl = _box_slices(lo, hi)
    spacing_zyx = tuple(float(v) for v in vol.spacing[::-1])
    out: dict[str, float] = {}
    diag = diagnostics if diagnostics is not None else {}
    classes = p["featureClass"]
    if "shape" in classes:
        shape_roi = reseg[sl] if (reseg is not None and s.get("resegmentShape", False)) else roi_c
        local: dict[str, float] = {}
        vals = calc.shape(shape_roi, spacing_zyx, _class_features("shape", classes["shape"]), local)
        out.update({f"original_shape_{k}": v for k, v in vals.items()})
        diag.update({f"original_{k}": v for k, v in local.items()})
    if reseg is not None:
        roi_c = reseg[sl]
    for type_name, custom in p["imageType"].items():
        args = dict(s)
        args.update(custom or {})
        for arr, tname, kw in _image_types(vol, type_name, args, lo, hi):
            out.update(_features(arr, roi_c, spacing_zyx, kw, classes, tname))
    return out


def _box_slices(lo: np.ndarray, hi: np.ndarray) -> tuple[slice, ...]:
    return tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi, strict=True))


def _read_inputs(image: Image | str | Path, mask: Image | str | Path, p: Mapping[str, Any], s: Mapping[str, Any],
                 lab: int) -> tuple[Image, Image, tuple[np.ndarray, np.ndarray] | None, np.ndarray | None, bool]:
    """The image and mask, read from their files where given as paths.

    The mask: scanned for the label without keeping it where only the label's box is needed (a plain
    NRRD or an unscaled .nii.gz; no resampling, pre-cropping or resegmentation:
    :func:`medimg.io.formats.scan_nrrd_label` / ``scan_nifti_label``, the mask then a geometry-only
    Image), else read whole. The image: up to the ROI's last slice when nothing else is needed
    (Original only, no normalisation, resampling or pre-cropping), the mask's geometry then cut to
    the same slices (the same grid check follows). Returns (image, mask, the label's bounds where
    found here else None, the ROI inside them where the mask was scanned, whether it was scanned)."""
    from medimg.io import read

    roi_box = None
    box = None
    scanned = False
    if not isinstance(mask, Image):
        mpath = Path(mask)
        mname = mpath.name.lower()
        if (_SCAN_MASKS and (mname.endswith(".nrrd") or mname.endswith(".nii.gz"))
                and s.get("resampledPixelSpacing") is None and not s.get("preCrop", False)
                and s.get("resegmentRange") is None):
            from medimg.io.formats import scan_nifti_label, scan_nrrd_label

            found = (scan_nrrd_label if mname.endswith(".nrrd") else scan_nifti_label)(mpath, lab)
            if found is not None:
                mask, box, roi_box = found
                scanned = True
        if not scanned:
            mask = read(mpath)
    if isinstance(image, Image):
        return image, mask, box, roi_box, scanned
    path = Path(image)
    only_box = (set(p["imageType"]) == {"Original"} and not s.get("normalize", False)
                and s.get("resampledPixelSpacing") is None and not s.get("preCrop", False))
    marr = np.asarray(mask.array)
    name = path.name.lower()
    if only_box and marr.ndim == 3 and (name.endswith(".nrrd") or name.endswith(".nii.gz")):
        from medimg.io.formats import read_nifti_slices, read_nrrd_slices

        if not scanned:
            box = _label_box(marr, lab)
        if box is not None:
            stop = int(box[1][0]) + 1
            if stop < marr.shape[0]:
                slab = (read_nrrd_slices if name.endswith(".nrrd") else read_nifti_slices)(path, stop)
                if (slab is not None and slab.array.shape[1:] == marr.shape[1:]
                        and slab.meta.get("source_slices") == marr.shape[0]):
                    cut = Image.from_geometry(marr[:stop], spacing=mask.spacing, origin=mask.origin,
                                              direction=mask.direction, meta=dict(mask.meta))
                    return slab, cut, box, roi_box, scanned
    return read(path), mask, box, roi_box, scanned


#: Whether label maps in plain NRRD or .nii.gz files are scanned for the label instead of read whole
#: (the same values either way; the tests compare both).
_SCAN_MASKS = True


def _features(arr: np.ndarray, roi: np.ndarray, spacing: tuple[float, float, float], s: Mapping[str, Any],
              classes: Mapping[str, Any], tname: str) -> dict[str, float]:
    out: dict[str, float] = {}
    binned = calc.binned(arr, roi, s)
    prepared = None
    for cls, wanted in classes.items():
        if cls == "shape":
            continue
        names = _class_features(cls, wanted)
        if cls == "firstorder":
            vals = calc.firstorder(arr, roi, spacing, s, names, binned)
        else:
            if prepared is None:
                prepared = calc.Discretised(binned.q, binned.counts)
            vals = getattr(calc, cls)(prepared, spacing, s, names)
        out.update({f"{tname}_{cls}_{k}": v for k, v in vals.items()})
    return out


# ----------------------------------------------------------------------------------------------- names

#: PyRadiomics feature -> the medimg feature (``family.name``) of the same IBSI definition, where one
#: exists. Equal definitions do not mean equal values: the binning, angles and mesh differ (see docs).
IBSI_EQUIVALENT: dict[str, str] = {
    "firstorder_Mean": "stat.mean", "firstorder_Variance": "stat.variance", "firstorder_Skewness": "stat.skewness",
    "firstorder_Kurtosis": "stat.kurtosis", "firstorder_Median": "stat.median", "firstorder_Minimum": "stat.minimum",
    "firstorder_10Percentile": "stat.percentile_10", "firstorder_90Percentile": "stat.percentile_90",
    "firstorder_Maximum": "stat.maximum", "firstorder_InterquartileRange": "stat.interquartile_range",
    "firstorder_Range": "stat.range", "firstorder_MeanAbsoluteDeviation": "stat.mean_absolute_deviation",
    "firstorder_RobustMeanAbsoluteDeviation": "stat.robust_mean_absolute_deviation",
    "firstorder_Energy": "stat.energy", "firstorder_RootMeanSquared": "stat.root_mean_square",
    "firstorder_Entropy": "ih.entropy", "firstorder_Uniformity": "ih.uniformity",
    "shape_MeshVolume": "morph.volume", "shape_VoxelVolume": "morph.volume_voxel_counting",
    "shape_SurfaceArea": "morph.surface_area", "shape_SurfaceVolumeRatio": "morph.surface_to_volume_ratio",
    "shape_Sphericity": "morph.sphericity", "shape_Compactness1": "morph.compactness_1",
    "shape_Compactness2": "morph.compactness_2", "shape_SphericalDisproportion": "morph.spherical_disproportion",
    "shape_Maximum3DDiameter": "morph.maximum_3d_diameter", "shape_MajorAxisLength": "morph.major_axis_length",
    "shape_MinorAxisLength": "morph.minor_axis_length", "shape_LeastAxisLength": "morph.least_axis_length",
    "shape_Elongation": "morph.elongation", "shape_Flatness": "morph.flatness",
    "glcm_MaximumProbability": "glcm.joint_maximum", "glcm_JointAverage": "glcm.joint_average",
    "glcm_SumSquares": "glcm.joint_variance", "glcm_JointEntropy": "glcm.joint_entropy",
    "glcm_DifferenceAverage": "glcm.difference_average", "glcm_DifferenceVariance": "glcm.difference_variance",
    "glcm_DifferenceEntropy": "glcm.difference_entropy", "glcm_SumAverage": "glcm.sum_average",
    "glcm_ClusterTendency": "glcm.sum_variance", "glcm_SumEntropy": "glcm.sum_entropy",
    "glcm_JointEnergy": "glcm.angular_second_moment", "glcm_Contrast": "glcm.contrast",
    "glcm_Id": "glcm.inverse_difference", "glcm_Idn": "glcm.normalised_inverse_difference",
    "glcm_Idm": "glcm.inverse_difference_moment", "glcm_Idmn": "glcm.normalised_inverse_difference_moment",
    "glcm_InverseVariance": "glcm.inverse_variance", "glcm_Correlation": "glcm.correlation",
    "glcm_Autocorrelation": "glcm.autocorrelation", "glcm_ClusterShade": "glcm.cluster_shade",
    "glcm_ClusterProminence": "glcm.cluster_prominence", "glcm_Imc1": "glcm.information_correlation_1",
    "glcm_Imc2": "glcm.information_correlation_2",
    "glrlm_ShortRunEmphasis": "glrlm.short_runs_emphasis", "glrlm_LongRunEmphasis": "glrlm.long_runs_emphasis",
    "glrlm_LowGrayLevelRunEmphasis": "glrlm.low_grey_level_run_emphasis",
    "glrlm_HighGrayLevelRunEmphasis": "glrlm.high_grey_level_run_emphasis",
    "glrlm_ShortRunLowGrayLevelEmphasis": "glrlm.short_run_low_grey_level_emphasis",
    "glrlm_ShortRunHighGrayLevelEmphasis": "glrlm.short_run_high_grey_level_emphasis",
    "glrlm_LongRunLowGrayLevelEmphasis": "glrlm.long_run_low_grey_level_emphasis",
    "glrlm_LongRunHighGrayLevelEmphasis": "glrlm.long_run_high_grey_level_emphasis",
    "glrlm_GrayLevelNonUniformity": "glrlm.grey_level_non_uniformity",
    "glrlm_GrayLevelNonUniformityNormalized": "glrlm.normalised_grey_level_non_uniformity",
    "glrlm_RunLengthNonUniformity": "glrlm.run_length_non_uniformity",
    "glrlm_RunLengthNonUniformityNormalized": "glrlm.normalised_run_length_non_uniformity",
    "glrlm_RunPercentage": "glrlm.run_percentage", "glrlm_GrayLevelVariance": "glrlm.grey_level_variance",
    "glrlm_RunVariance": "glrlm.run_length_variance", "glrlm_RunEntropy": "glrlm.run_entropy",
    "glszm_SmallAreaEmphasis": "glszm.small_zone_emphasis", "glszm_LargeAreaEmphasis": "glszm.large_zone_emphasis",
    "glszm_LowGrayLevelZoneEmphasis": "glszm.low_grey_level_zone_emphasis",
    "glszm_HighGrayLevelZoneEmphasis": "glszm.high_grey_level_zone_emphasis",
    "glszm_SmallAreaLowGrayLevelEmphasis": "glszm.small_zone_low_grey_level_emphasis",
    "glszm_SmallAreaHighGrayLevelEmphasis": "glszm.small_zone_high_grey_level_emphasis",
    "glszm_LargeAreaLowGrayLevelEmphasis": "glszm.large_zone_low_grey_level_emphasis",
    "glszm_LargeAreaHighGrayLevelEmphasis": "glszm.large_zone_high_grey_level_emphasis",
    "glszm_GrayLevelNonUniformity": "glszm.grey_level_non_uniformity",
    "glszm_GrayLevelNonUniformityNormalized": "glszm.normalised_grey_level_non_uniformity",
    "glszm_SizeZoneNonUniformity": "glszm.zone_size_non_uniformity",
    "glszm_SizeZoneNonUniformityNormalized": "glszm.normalised_zone_size_non_uniformity",
    "glszm_ZonePercentage": "glszm.zone_percentage", "glszm_GrayLevelVariance": "glszm.grey_level_variance",
    "glszm_ZoneVariance": "glszm.zone_size_variance", "glszm_ZoneEntropy": "glszm.zone_size_entropy",
    "gldm_SmallDependenceEmphasis": "ngldm.low_dependence_emphasis",
    "gldm_LargeDependenceEmphasis": "ngldm.high_dependence_emphasis",
    "gldm_LowGrayLevelEmphasis": "ngldm.low_grey_level_count_emphasis",
    "gldm_HighGrayLevelEmphasis": "ngldm.high_grey_level_count_emphasis",
    "gldm_SmallDependenceLowGrayLevelEmphasis": "ngldm.low_dependence_low_grey_level_emphasis",
    "gldm_SmallDependenceHighGrayLevelEmphasis": "ngldm.low_dependence_high_grey_level_emphasis",
    "gldm_LargeDependenceLowGrayLevelEmphasis": "ngldm.high_dependence_low_grey_level_emphasis",
    "gldm_LargeDependenceHighGrayLevelEmphasis": "ngldm.high_dependence_high_grey_level_emphasis",
    "gldm_GrayLevelNonUniformity": "ngldm.grey_level_non_uniformity",
    "gldm_DependenceNonUniformity": "ngldm.dependence_count_non_uniformity",
    "gldm_DependenceNonUniformityNormalized": "ngldm.normalised_dependence_count_non_uniformity",
    "gldm_GrayLevelVariance": "ngldm.grey_level_variance", "gldm_DependenceVariance": "ngldm.dependence_count_variance",
    "gldm_DependenceEntropy": "ngldm.dependence_count_entropy",
    "ngtdm_Coarseness": "ngtdm.coarseness", "ngtdm_Contrast": "ngtdm.contrast", "ngtdm_Busyness": "ngtdm.busyness",
    "ngtdm_Complexity": "ngtdm.complexity", "ngtdm_Strength": "ngtdm.strength",
}

_CODES: dict[str, str] = {}


def pyradiomics_name_info(key: str) -> tuple[str, str, str] | None:
    """``(image type, medimg equivalent or "", IBSI code or "")`` of a PyRadiomics feature name
    (``"original_glcm_Contrast"`` -> ``("original", "glcm.contrast", "ACUI")``); ``None`` if ``key``
    is not one (e.g. a medimg key with dots)."""
    if "." in key or key.count("_") < 2:
        return None
    parts = key.split("_")
    cls, feat = parts[-2], parts[-1]
    if cls not in calc.FEATURE_NAMES:
        return None
    image_type = "_".join(parts[:-2])
    equiv = IBSI_EQUIVALENT.get(f"{cls}_{feat}", "")
    if equiv and not _CODES:
        from medimg.features import feature_specs

        for spec in feature_specs():
            _CODES[f"{spec.family}.{spec.name}"] = spec.ibsi_code
    return image_type, equiv, _CODES.get(equiv, "")
