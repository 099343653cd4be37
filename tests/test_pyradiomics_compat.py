"""medimg's PyRadiomics mode against PyRadiomics itself (pyradiomics-bhklab, a test dependency):
every feature within 1e-6 relative, on brain1 (tests/data/mri-brain1) and synthetic shapes, under
several parameter files and every supported image type."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

radiomics = pytest.importorskip("radiomics")
sitk = pytest.importorskip("SimpleITK")
from radiomics import featureextractor  # noqa: E402

from medimg import Image  # noqa: E402
from medimg.core import jit  # noqa: E402
from medimg.errors import ParameterError  # noqa: E402
from medimg.features import extract, preset  # noqa: E402
from medimg.features.pyradiomics_compat import extract_pyradiomics, load_params  # noqa: E402
from medimg.features.table import to_long  # noqa: E402

radiomics.setVerbosity(logging.ERROR)
DATA = Path(__file__).parent / "data" / "mri-brain1"
CLASSES = {c: None for c in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")}


def _brain() -> tuple[sitk.Image, sitk.Image]:
    return (sitk.ReadImage(str(DATA / "brain1_roi_image.nrrd")), sitk.ReadImage(str(DATA / "brain1_roi_label.nrrd")))


def _reference(img: sitk.Image, msk: sitk.Image, params: dict | None) -> dict[str, float]:
    ex = featureextractor.RadiomicsFeatureExtractor(params) if params else featureextractor.RadiomicsFeatureExtractor()
    return {k: float(v) for k, v in ex.execute(img, msk).items() if not k.startswith("diagnostics")}


#: Both paths of the PyRadiomics mode: the NumPy one, and the compiled kernels where numba is installed.
PATHS = (False, True) if jit.numba_available() else (False,)


def _assert_same(img: sitk.Image, msk: sitk.Image, params: dict | None, n: int | None = None) -> dict[str, float]:
    ref = _reference(img, msk, params)
    if n is not None:
        assert len(ref) == n
    for compiled in PATHS:
        got = extract_pyradiomics(Image.from_sitk(img), Image.from_sitk(msk), params, compiled=compiled)
        assert set(got) == set(ref)
        bad = {k: (got[k], v) for k, v in ref.items()
               if not (np.isnan(v) and np.isnan(got[k])) and abs(got[k] - v) > 1e-6 * max(abs(v), 1e-12)}
        assert not bad, (compiled, bad)
    return got


def test_default_brain1_107_features():
    img, msk = _brain()
    _assert_same(img, msk, None, n=107)


@pytest.mark.parametrize("setting", [
    {"binCount": 16},
    {"binWidth": 10, "resampledPixelSpacing": [2, 2, 2], "interpolator": "sitkBSpline"},
    {"binWidth": 5, "normalize": True, "normalizeScale": 100, "removeOutliers": 3},
    {"force2D": True, "force2Ddimension": 0, "distances": [1, 2], "symmetricalGLCM": False, "gldm_a": 1},
    {"voxelArrayShift": 1000, "weightingNorm": "manhattan", "binWidth": 40},
])
def test_parameter_files_brain1(setting):
    img, msk = _brain()
    _assert_same(img, msk, {"setting": setting, "featureClass": CLASSES}, n=107)


@pytest.mark.slow
def test_every_image_type_brain1():
    img, msk = _brain()
    params = {"setting": {"binWidth": 10},
              "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 2.5]}, "Wavelet": {}, "Square": {},
                            "SquareRoot": {}, "Logarithm": {}, "Exponential": {}, "Gradient": {}},
              "featureClass": CLASSES}
    got = _assert_same(img, msk, params)
    assert "log-sigma-2-5-mm-3D_glcm_Contrast" in got and "wavelet-LLH_glrlm_RunEntropy" in got


def _synthetic(mask: np.ndarray, seed: int = 0, spacing=(0.8, 0.9, 2.0)) -> tuple[sitk.Image, sitk.Image]:
    rng = np.random.default_rng(seed)
    arr = rng.normal(100, 40, mask.shape).round().astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    m = sitk.GetImageFromArray(mask.astype(np.uint8))
    for x in (img, m):
        x.SetSpacing(spacing)
        x.SetOrigin((-3.0, 4.0, 10.0))
    return img, m


def _sphere() -> np.ndarray:
    z, y, x = np.ogrid[:12, :24, :24]
    return ((z - 6) * 2.0) ** 2 + (y - 12) ** 2 + (x - 11.5) ** 2 <= 64


def _plate() -> np.ndarray:
    m = np.zeros((5, 20, 20), bool)
    m[2, 3:17, 4:15] = True
    return m


def _fragments() -> np.ndarray:
    rng = np.random.default_rng(3)
    m = np.zeros((10, 30, 30), bool)
    for _ in range(55):
        z, y, x = rng.integers(1, 9), rng.integers(1, 29), rng.integers(1, 29)
        m[z, y, x] = True
        if rng.random() < 0.5:
            m[z, y, x + 1 if x < 28 else x - 1] = True
    return m


@pytest.mark.parametrize("make", [_sphere, _plate, _fragments], ids=["sphere", "plate", "fragments"])
@pytest.mark.parametrize("setting", [{}, {"binCount": 8}], ids=["default", "bincount"])
def test_synthetic_shapes(make, setting):
    img, msk = _synthetic(make())
    _assert_same(img, msk, {"setting": setting, "featureClass": CLASSES}, n=107)


def test_single_voxel_roi_refused_like_pyradiomics():
    m = np.zeros((5, 5, 5), bool)
    m[2, 2, 2] = True
    img, msk = _synthetic(m)
    with pytest.raises(ValueError):
        _reference(img, msk, None)
    with pytest.raises(ParameterError, match="1 segmented voxel"):
        extract_pyradiomics(Image.from_sitk(img), Image.from_sitk(msk))


def test_preset_and_names_in_long_table():
    img, msk = _brain()
    values = extract(Image.from_sitk(img), Image.from_sitk(msk), config=preset("pyradiomics"))
    assert len(values) == 107
    rows = {r["feature"]: r for r in to_long([{"case": "b", "label": 1, **values}])}
    assert rows["original_glcm_Contrast"]["ibsi_code"] == "ACUI"
    assert rows["original_glcm_Contrast"]["pyradiomics_name"] == "original_glcm_Contrast"
    assert rows["original_glcm_MCC"]["ibsi_code"] == ""


def test_unknown_keys_are_errors(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("setting:\n  binWidht: 10\n")
    with pytest.raises(ParameterError, match="binWidht.*binWidth"):
        load_params(bad)
    with pytest.raises(ParameterError, match="image type 'LBP3D'"):
        load_params({"imageType": {"LBP3D": {}}})
    with pytest.raises(ParameterError, match="voxelSetting"):
        load_params({"voxelSetting": {"kernelRadius": 2}})
    for bad_distances in ([0], [], [1.5], "1"):  # PyRadiomics's schema: integers >= 1
        with pytest.raises(ParameterError, match="distances"):
            load_params({"setting": {"distances": bad_distances}})
    assert load_params({"setting": {"distances": [1, 3]}})["setting"]["distances"] == [1, 3]


def _smooth_image(shape=(24, 96, 96), seed=5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = rng.normal(0, 1, shape)
    for axis in range(3):  # a little spatial correlation, so the filters have structure to respond to
        arr = arr + np.roll(arr, 1, axis) + np.roll(arr, -1, axis)
    return (arr * 40 + 300).round().astype(np.int16)


@pytest.mark.parametrize("where", ["inside", "border"])
def test_filters_on_the_roi_box_match_whole_image(where):
    """medimg computes the LoG, wavelet and gradient responses on the ROI's box plus the filters'
    reach (not the whole image); PyRadiomics filters the whole image. Same values, ROI in the middle
    of a larger image (the box is cropped) and touching three borders (wrap-around of the wavelet)."""
    arr = _smooth_image()
    mask = np.zeros(arr.shape, bool)
    if where == "inside":
        mask[10:14, 40:52, 44:53] = True
        mask[11, 38:40, 45:48] = True
    else:
        mask[19:24, 0:9, 88:96] = True
        mask[20, 9:11, 90:92] = True
    img = sitk.GetImageFromArray(arr)
    msk = sitk.GetImageFromArray(mask.astype(np.uint8))
    for x in (img, msk):
        x.SetSpacing((0.8, 0.8, 2.0))
    params = {"setting": {"binCount": 16},
              "imageType": {"LoG": {"sigma": [1.0, 2.5]}, "Wavelet": {}, "Gradient": {}, "Square": {}},
              "featureClass": {"firstorder": None, "glcm": None}}
    _assert_same(img, msk, params)
    params["imageType"] = {"Wavelet": {"wavelet": "db2", "start_level": 1, "level": 2}}
    _assert_same(img, msk, params)


def test_files_read_up_to_the_roi(tmp_path):
    """From files, with Original only, medimg reads the image's slices up to the ROI's last (a gzip
    NRRD inflated only that far): the same values as from the whole image, and PyRadiomics's; a
    mask whose grid differs is still refused."""
    from medimg.errors import GeometryMismatchError
    from medimg.io import read
    from medimg.io.formats import read_nrrd_slices

    arr = _smooth_image((12, 40, 40))
    mask = np.zeros(arr.shape, np.uint8)
    mask[2:7, 10:25, 12:30] = 1
    img = sitk.GetImageFromArray(arr)
    msk = sitk.GetImageFromArray(mask)
    for x in (img, msk):
        x.SetSpacing((0.7, 0.7, 3.0))
        x.SetOrigin((5.0, -2.0, 30.0))
    paths = {}
    for name, x in (("image", img), ("mask", msk)):
        paths[name] = str(tmp_path / f"{name}.nrrd")
        sitk.WriteImage(x, paths[name], useCompression=True)
    whole = read(paths["image"])
    slab = read_nrrd_slices(Path(paths["image"]), 7)
    if slab is None:
        pytest.skip("isal not installed: the image is read whole")
    assert slab.array.shape == (7, 40, 40) and slab.meta["source_slices"] == 12
    assert np.array_equal(slab.array, whole.array[:7]) and np.allclose(slab.origin, whole.origin)
    got = extract_pyradiomics(paths["image"], paths["mask"])
    assert got == extract_pyradiomics(whole, read(paths["mask"]))
    ref = _reference(img, msk, None)
    assert all(abs(got[k] - v) <= 1e-6 * max(abs(v), 1e-12) for k, v in ref.items())
    short = tmp_path / "short.nrrd"
    sitk.WriteImage(img[:, :, :10], str(short), useCompression=True)
    with pytest.raises(GeometryMismatchError):
        extract_pyradiomics(str(short), paths["mask"])


def test_diameters_against_all_pairs():
    """The 2-D diameters compare only candidate vertices (first/last on axis lines, then on six more
    in-plane directions when there are many): the same maxima as every pair of vertices of a plane."""
    from scipy import ndimage

    from medimg.features import _pyradiomics_calc as calc

    rng = np.random.default_rng(11)
    blob = ndimage.gaussian_filter(rng.random((22, 48, 44)), 2.0) > 0.5  # many vertices per plane
    spacing = np.asarray([2.0, 0.7, 0.9])
    _, _, twice = calc._mesh(np.pad(blob, 1), spacing)
    assert len(twice) > 2000
    pts = twice * (spacing / 2.0)
    got = calc._diameters(twice, spacing)
    for k, axis in enumerate((0, 1, 2)):
        rest = [d for d in range(3) if d != axis]
        best = 0.0
        for level in np.unique(twice[:, axis]):
            p = pts[twice[:, axis] == level][:, rest]
            best = max(best, float(np.max(np.sum((p[:, None] - p[None]) ** 2, axis=2))))
        assert got[k] == pytest.approx(np.sqrt(best), rel=1e-12)
    sub = pts[rng.choice(len(pts), 1500, replace=False)]
    assert got[3] >= np.sqrt(np.max(np.sum((sub[:, None] - sub[None]) ** 2, axis=2))) - 1e-12


def test_nifti_gz_inflated_in_memory_same_image(tmp_path):
    """A .nii.gz is inflated in one call (libdeflate) and parsed by nibabel from memory: the same
    image as nibabel.load, also for a file in two gzip members (which goes to nibabel.load)."""
    import gzip

    import nibabel as nib

    from medimg.io import read
    from medimg.io.formats import _nifti_in_memory

    rng = np.random.default_rng(2)
    arr = rng.normal(0, 100, (9, 11, 7)).astype(np.float32)
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = (4.0, -7.0, 12.0)
    one = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(arr, affine), str(one))
    raw = gzip.decompress(one.read_bytes())
    two = tmp_path / "two.nii.gz"
    two.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    expected = Image.from_nibabel(nib.load(str(one)))
    for path in (one, two):
        got = read(path)
        assert np.array_equal(got.array, expected.array) and got.array.dtype == expected.array.dtype
        assert np.allclose(got.origin, expected.origin) and np.allclose(got.spacing, expected.spacing)
        assert np.allclose(got.direction, expected.direction)
    if _nifti_in_memory(one) is None:
        pytest.skip("deflate not installed")
    assert _nifti_in_memory(two) is None


@pytest.mark.parametrize("rare", [False, True], ids=["common-levels", "rare-levels"])
def test_mcc_matches_pyradiomics_q(rare):
    """MCC through the symmetric form where PyRadiomics's eps cannot matter (certified by a bound),
    PyRadiomics's own Q otherwise: both within 1e-8 of sqrt(second eigenvalue of Q) with the eps."""
    from medimg.features import _pyradiomics_calc as calc

    rng = np.random.default_rng(4)
    counts = rng.integers(0, 50, (12, 12, 13)).astype(float)
    if rare:  # two levels seen once each, only next to each other: p_x p_y ~ 1e-11, eps matters
        counts[10:, :, :] = 0
        counts[:, 10:, :] = 0
        counts[10, 11, :] = 1
        counts *= 1e3
        counts[10, 11, :] = 1
    counts = counts + counts.transpose(1, 0, 2)
    P = counts / counts.sum((0, 1), keepdims=True)
    px, py = P.sum(1, keepdims=True), P.sum(0, keepdims=True)
    q = np.einsum("ika,jka->aij", P / (px[:, 0, :][:, None, :] * py[0][None] + np.spacing(1)), P)
    ev = np.sort(np.linalg.eigvals(q), axis=1)
    expected = float(np.mean(np.sqrt(ev[:, -2])).real)
    assert calc._mcc(P, px[:, 0, :], py[0]) == pytest.approx(expected, rel=1e-8)


def test_filters_on_the_roi_box_float_normalised_image():
    """The same on a float64 image with PyRadiomics's normalisation (the LoG's first pass then
    rounds double to float32, as ITK's composed filter does)."""
    arr = _smooth_image().astype(np.float64) / 7.0
    mask = np.zeros(arr.shape, np.uint8)
    mask[10:14, 40:52, 44:53] = 1
    img = sitk.GetImageFromArray(arr)
    msk = sitk.GetImageFromArray(mask)
    for x in (img, msk):
        x.SetSpacing((0.8, 0.8, 2.0))
    params = {"setting": {"binCount": 16, "normalize": True, "normalizeScale": 100},
              "imageType": {"LoG": {"sigma": [1.0, 2.0]}, "Gradient": {}, "Wavelet": {}},
              "featureClass": {"firstorder": None, "glcm": None}}
    _assert_same(img, msk, params)
