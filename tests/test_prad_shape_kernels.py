"""The compiled (numba) shape kernels of the PyRadiomics mode (``features/_prad_shape_kernels.py``)
against the NumPy path and exact brute force: the same mesh area, volume and vertices, the same
maximum diameters (every pair of vertices), the same features on brain1 and adversarial ROIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")

from medimg.core.jit import use_compiled  # noqa: E402
from medimg.features import _prad_shape_kernels as kernels  # noqa: E402
from medimg.features import _pyradiomics_calc as calc  # noqa: E402

DATA = Path(__file__).parent / "data" / "mri-brain1"
NAMES = calc.FEATURE_NAMES["shape"] + calc.DEPRECATED["shape"]


def _brain1_roi() -> tuple[np.ndarray, tuple[float, float, float]]:
    from medimg.io import read

    mask = read(DATA / "brain1_roi_label.nrrd")
    roi = np.asarray(mask.array) == 1
    idx = np.argwhere(roi)
    lo, hi = idx.min(0), idx.max(0)
    return roi[tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))], tuple(mask.spacing[::-1])


def _crop(m: np.ndarray) -> np.ndarray:
    idx = np.argwhere(m)
    lo, hi = idx.min(0), idx.max(0)
    return m[tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))]


def _rois() -> dict[str, tuple[np.ndarray, tuple[float, float, float]]]:
    rng = np.random.default_rng(5)
    out = {"brain1": _brain1_roi()}
    z, y, x = np.ogrid[:14, :30, :28]
    out["sphere"] = (((z - 7) * 2.0) ** 2 + (y - 15) ** 2 + (x - 13.5) ** 2 <= 100, (2.0, 0.8, 0.9))
    plate = np.zeros((1, 25, 19), bool)
    plate[0, 2:23, 1:18] = True
    out["plate-1-thick"] = (plate, (5.0, 0.7, 0.7))
    line = np.ones((1, 1, 9), bool)
    line[0, 0, 4] = False
    out["broken-line"] = (line, (1.0, 1.0, 1.0))
    frag = np.zeros((6, 40, 40), bool)
    for _ in range(60):
        c = rng.integers(0, [6, 40, 38])
        frag[c[0], c[1], c[2]:c[2] + rng.integers(1, 3)] = True
    out["fragments"] = (_crop(frag), (3.0, 0.6, 0.6))
    for seed in (0, 1, 2):
        r = np.random.default_rng(seed)
        out[f"random-{seed}"] = (_crop(r.random((7, 15, 13)) < 0.4), tuple(r.uniform(0.4, 3.0, 3)))
    checker = (np.indices((4, 9, 9)).sum(0) % 2).astype(bool)  # every voxel a fragment of its own
    out["checkerboard"] = (checker, (1.0, 1.0, 1.0))
    out["single-voxel"] = (np.ones((1, 1, 1), bool), (1.0, 2.0, 3.0))
    return out


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # a single voxel: 0 / 0 axes, as in NumPy
@pytest.mark.parametrize("name", list(_rois()))
def test_shape_compiled_equals_numpy(name):
    roi, spacing = _rois()[name]
    with use_compiled(False):
        want_diag: dict[str, float] = {}
        want = calc.shape(roi, spacing, NAMES, want_diag)
    with use_compiled(True):
        got_diag: dict[str, float] = {}
        got = calc.shape(roi, spacing, NAMES, got_diag)
    assert list(got) == list(want)
    for key, value in want.items():
        if np.isnan(value):
            assert np.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-300), key
    assert set(got_diag) == set(want_diag)  # negative-volume diagnostics flagged alike


def test_negative_volume_reproduced_and_flagged():
    """A configuration PyRadiomics's half table orients inward: the volume stays negative (as
    PyRadiomics gives it) and the diagnostics carry its absolute value, compiled as in NumPy."""
    found = False
    for seed in range(80, 90):  # seed 83: a sparse mask of this kind with a negative volume
        r = np.random.default_rng(seed)
        roi = r.random((3, 4, 4)) < 0.1
        if not roi.any():
            continue
        with use_compiled(True):
            diag: dict[str, float] = {}
            vol = calc.shape(roi, (1.0, 1.0, 1.0), ("MeshVolume",), diag)["MeshVolume"]
        with use_compiled(False):
            ref = calc.shape(roi, (1.0, 1.0, 1.0), ("MeshVolume",))["MeshVolume"]
        assert vol == pytest.approx(ref, rel=1e-12, abs=1e-12)
        if vol < 0:
            found = True
            assert diag["shape_MeshVolume.pyradiomics_negative_corrected"] == pytest.approx(-vol)
    assert found


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mesh_kernel_equals_numpy(seed):
    r = np.random.default_rng(seed)
    roi = r.random((6, 11, 9)) < 0.5
    spacing = r.uniform(0.3, 4.0, 3)
    padded = np.pad(roi, 1)
    area, volume, twice = calc._mesh(padded, spacing)
    k_area, k_volume, k_twice = kernels.mesh(padded, spacing, calc._mesh_tables(spacing))
    assert k_area == pytest.approx(area, rel=1e-13)
    assert k_volume == pytest.approx(volume, rel=1e-12, abs=1e-12)
    assert {tuple(v) for v in k_twice} == {tuple(v) for v in twice} and len(k_twice) == len(twice)


def test_mesh_kernel_refuses_unpadded():
    with pytest.raises(ValueError):
        kernels.mesh(np.ones((3, 3, 3), bool), np.ones(3), calc._mesh_tables(np.ones(3)))


def _all_pairs(points: np.ndarray) -> float:
    return float(np.max(np.sum((points[:, None, :] - points[None, :, :]) ** 2, axis=2))) if len(points) > 1 else 0.0


@pytest.mark.parametrize("kind", ["ball", "shell", "line", "plane", "cluster-pair", "few"])
def test_max_sq_distance_exact(kind):
    """The cell-pruned search gives exactly the all-pairs maximum (same float value)."""
    r = np.random.default_rng(len(kind))
    if kind == "ball":
        p = r.normal(size=(1500, 3))
    elif kind == "shell":
        p = r.normal(size=(1800, 3))
        p /= np.linalg.norm(p, axis=1, keepdims=True)
        p *= [3.0, 1.0, 0.5]
    elif kind == "line":
        p = np.outer(r.random(900), [0.3, 1.7, -2.0])
    elif kind == "plane":
        p = np.c_[r.random(1000), r.random(1000), np.full(1000, 2.5)]
    elif kind == "cluster-pair":
        p = np.r_[r.normal(0, 0.01, (600, 3)), r.normal(5, 0.01, (600, 3))]
    else:
        p = r.random((7, 3))
    assert kernels.max_sq_distance(p) == _all_pairs(p)


def test_diameters_kernel_against_all_pairs():
    """Each plane's and the 3-D maximum diameter equal the all-pairs maxima over every vertex."""
    from scipy import ndimage

    r = np.random.default_rng(11)
    blob = ndimage.gaussian_filter(r.random((9, 34, 30)), 2.0) > 0.5
    spacing = np.asarray([2.0, 0.7, 0.9])
    _, _, twice = kernels.mesh(np.pad(blob, 1), spacing, calc._mesh_tables(spacing))
    assert len(twice) > 1500
    sizes = np.unique(twice[:, 0], return_counts=True)[1]
    assert sizes.max() > 100  # planes large enough for the hull path
    pts = twice * (spacing / 2.0)
    got = kernels.diameters(twice, spacing)
    for k in range(3):
        best = 0.0
        for level in np.unique(twice[:, k]):
            p = pts[twice[:, k] == level].copy()
            p[:, k] = 0.0
            best = max(best, _all_pairs(p))
        assert got[k] == np.sqrt(best)
    best = 0.0
    for start in range(0, len(pts), 1024):  # every pair, in blocks
        d = np.sum((pts[start:start + 1024, None, :] - pts[None, :, :]) ** 2, axis=2)
        best = max(best, float(d.max()))
    assert got[3] == np.sqrt(best)
    assert got == pytest.approx(calc._diameters(twice, spacing), rel=1e-14)


def test_voxel_coords_same_array_and_layout():
    r = np.random.default_rng(2)
    m = r.random((5, 6, 7)) < 0.3
    sp = np.asarray([0.7, 1.3, 2.1])
    got = kernels.voxel_coords(m, sp)
    want = np.stack(np.nonzero(m)).T.astype(float) * sp
    assert np.array_equal(got, want) and got.strides == want.strides


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_gzip_prefix_inflated_exactly(level):
    """libdeflate stopped at a prefix (a partly read NRRD) leaves every byte of the prefix final,
    with stored blocks (level 0) and matches across the cut too."""
    import zlib

    from medimg.io.formats import _inflate_prefix, _libdeflate

    if _libdeflate() is None:
        pytest.skip("the optional deflate (libdeflate) is not installed")
    r = np.random.default_rng(level)
    data = np.concatenate([r.integers(0, 256, 150_000), np.repeat(r.integers(0, 4, 3000), 40),
                           r.integers(0, 3, 100_000)]).astype(np.uint8).tobytes()
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    stream = memoryview(comp.compress(data) + comp.flush())
    for cut in (1, 257, 65_535, 65_536, 149_999, 150_001, 200_000, len(data) - 300, len(data) - 1, len(data)):
        got = _inflate_prefix(stream, cut)
        assert got is not None and got.tobytes() == data[:cut], cut
    assert _inflate_prefix(stream, len(data) + 1) is None  # shorter than asked
    two = zlib.compressobj(level, zlib.DEFLATED, 31)
    second = two.compress(data[:5000]) + two.flush()
    assert _inflate_prefix(memoryview(bytes(stream) + second), len(data) + 10) is None  # only the first member
    assert _inflate_prefix(memoryview(b"\x1f\x8b\x08\x00garbage"), 10) is None


def test_nrrd_slices_same_as_whole(tmp_path):
    """The first slices of a gzip NRRD, inflated only that far, equal the whole file's."""
    sitk = pytest.importorskip("SimpleITK")
    from medimg.io import read
    from medimg.io.formats import read_nrrd_slices

    r = np.random.default_rng(4)
    arr = r.normal(0, 300, (9, 33, 31)).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.8, 3.0))
    path = tmp_path / "x.nrrd"
    sitk.WriteImage(img, str(path), useCompression=True)
    whole = read(path)
    for stop in (1, 4, 8):
        slab = read_nrrd_slices(path, stop)
        assert slab is not None and slab.array.flags.writeable
        assert np.array_equal(slab.array, whole.array[:stop]) and slab.spacing == whole.spacing


@pytest.mark.parametrize("scaled", [False, True])
def test_nifti_slices_same_as_whole(tmp_path, scaled):
    """The first slices of a .nii.gz, inflated only that far: the same voxels (scaling included),
    affine and meta as the whole file read by medimg.io.read."""
    nib = pytest.importorskip("nibabel")
    from medimg.io import read
    from medimg.io.formats import _libdeflate, read_nifti_slices

    if _libdeflate() is None:
        pytest.skip("the optional deflate (libdeflate) is not installed")
    r = np.random.default_rng(6)
    data = r.integers(-1000, 3000, (31, 29, 11)).astype(np.int16)  # (x, y, z)
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = (10.0, -20.0, 5.0)
    img = nib.Nifti1Image(data, affine)
    if scaled:
        img.header.set_slope_inter(0.5, -12.0)
    path = tmp_path / "x.nii.gz"
    nib.save(img, str(path))
    whole = read(path)
    for stop in (1, 6, 10):
        slab = read_nifti_slices(path, stop)
        assert slab is not None and slab.meta["source_slices"] == 11
        assert slab.dtype == whole.dtype and np.array_equal(slab.array, whole.array[:stop])
        assert np.array_equal(slab.affine, whole.affine)
    assert read_nifti_slices(path, 11) is None  # every slice: read whole
    four = tmp_path / "four.nii.gz"
    nib.save(nib.Nifti1Image(data[..., None].repeat(2, axis=3), affine), str(four))
    assert read_nifti_slices(four, 3) is None


def test_extract_reads_nifti_slab_same_values(tmp_path, monkeypatch):
    """From .nii.gz files, the PyRadiomics mode reads the image only up to the ROI's last slice:
    the same features as from the images in memory."""
    nib = pytest.importorskip("nibabel")
    from medimg.features.pyradiomics_compat import extract_pyradiomics
    from medimg.io import formats, read

    calls = []
    real = formats.read_nifti_slices
    monkeypatch.setattr(formats, "read_nifti_slices", lambda path, stop: calls.append(stop) or real(path, stop))

    r = np.random.default_rng(8)
    data = r.normal(100, 30, (24, 22, 12)).astype(np.float32)
    lab = np.zeros(data.shape, np.uint8)
    lab[5:15, 6:16, 2:6] = 1
    affine = np.diag([0.7, 0.7, 3.0, 1.0])
    for arr, name in ((data, "img.nii.gz"), (lab, "lab.nii.gz")):
        nib.save(nib.Nifti1Image(arr, affine), str(tmp_path / name))
    got = extract_pyradiomics(str(tmp_path / "img.nii.gz"), str(tmp_path / "lab.nii.gz"))
    want = extract_pyradiomics(read(tmp_path / "img.nii.gz"), read(tmp_path / "lab.nii.gz"))
    assert calls == [6] and got == want


def test_digitize_kernel_equals_numpy():
    """Binning: the compiled digitize gives numpy.digitize's bins, edge values, NaN and infinities
    included, for PyRadiomics's width and count edges over int16 / float32 / float64 values."""
    for seed in range(60):
        r = np.random.default_rng(seed)
        x = r.normal(0, 10 ** r.uniform(0, 3), int(r.integers(1, 2000)))
        x = (x.round().astype(np.int16), x.astype(np.float32), x)[seed % 3]
        edges = calc.bin_edges(x, bin_width=float(r.choice([25, 0.5, 7.3])),
                               bin_count=None if seed % 4 else int(r.integers(1, 40)))
        values = np.concatenate([x.astype(float), edges, [np.nan, np.inf, -np.inf]])
        assert np.array_equal(kernels.digitize(values, edges), np.digitize(values, edges)), seed


def test_sorted_order_statistics_equal_numpy():
    """firstorder's percentiles and median from one sort: bit for bit numpy.percentile / median."""
    for seed in range(300):
        r = np.random.default_rng(seed)
        n = int(r.integers(1, 40)) if seed % 3 else int(r.integers(1, 3000))
        x = r.normal(0, 10 ** r.uniform(-3, 4), n)
        if seed % 2:
            x = x.round()
        if seed % 5 == 0:
            x = r.integers(0, 3, n).astype(float)
        xs = np.sort(x)
        assert np.array_equal(calc._sorted_percentiles(xs, calc._FIRSTORDER_Q), np.percentile(x, [10, 25, 75, 90]))
        assert calc._sorted_median(xs) == np.median(x)


@pytest.mark.parametrize("name", ["brain1", "fragments", "plate-1-thick", "random-1"])
@pytest.mark.parametrize("setting", [{"binWidth": 25}, {"binCount": 16}, {"binWidth": 5, "voxelArrayShift": 300}])
def test_discretise_and_firstorder_compiled_equal_numpy(name, setting):
    roi, spacing = _rois()[name]
    r = np.random.default_rng(3)
    image = r.normal(80, 40, roi.shape).round().astype(np.int16)
    if name == "random-1":
        image = image.astype(np.float32) / 7
    names = calc.FEATURE_NAMES["firstorder"] + calc.DEPRECATED["firstorder"]
    with use_compiled(False):
        q0 = calc.discretise(image, roi, setting)
        f0 = calc.firstorder(image, roi, spacing, setting, names, q0)
    with use_compiled(True):
        q1 = calc.discretise(image, roi, setting)
        f1 = calc.firstorder(image, roi, spacing, setting, names, q1)
    assert np.array_equal(q0, q1) and q1.dtype == q0.dtype
    assert f1 == f0


@pytest.mark.parametrize("kind", ["disc", "square", "collinear", "random"])
def test_plane_hull_maximum_exact(kind):
    """The in-plane search over the convex hull's vertices (monotone chain on the integer lattice)
    gives the all-pairs maximum of a plane's points."""
    r = np.random.default_rng(len(kind))
    if kind == "disc":
        g = np.indices((61, 61)).reshape(2, -1).T - 30
        g = g[np.abs(np.hypot(g[:, 0], g[:, 1]) - 27) < 1.0]
    elif kind == "square":
        g = np.indices((40, 40)).reshape(2, -1).T
    elif kind == "collinear":
        g = np.c_[np.arange(0, 300, 3), np.arange(0, 200, 2)]
    else:
        g = np.unique(r.integers(0, 500, (400, 2)), axis=0)
    g = r.permutation(g).astype(np.int64)
    assert len(g) > 48
    pts = np.c_[g[:, 0] * 0.35, np.zeros(len(g)), g[:, 1] * 1.25]
    got = kernels._kernel("_plane_max")(np.ascontiguousarray(g), np.ascontiguousarray(pts), 0.0)
    assert got == _all_pairs(pts)


def _assert_scan_as_read(found, path, label) -> None:
    """A label scan's (geometry, bounds, ROI) equal what reading the whole map gives."""
    from medimg.features.pyradiomics_compat import _label_box
    from medimg.io import read

    geometry, box, roi = found
    whole = read(path)
    assert geometry.shape == whole.shape and np.array_equal(geometry.affine, whole.affine)
    want = _label_box(np.asarray(whole.array), label)
    if want is None:  # label absent
        assert box is None and roi is None
        return
    assert np.array_equal(box[0], want[0]) and np.array_equal(box[1], want[1])
    sl = tuple(slice(a, b + 1) for a, b in zip(*want, strict=True))
    assert np.array_equal(roi, np.asarray(whole.array)[sl] == label)


@pytest.mark.parametrize("kind", ["raw-uint8", "gzip-int32", "gzip-int16-big-endian", "absent"])
def test_scan_nrrd_label_same_as_read(tmp_path, kind):
    """Scanning a label map for one label (never keeping the map) finds the bounds and the ROI that
    reading the whole map gives, on the same grid."""
    sitk = pytest.importorskip("SimpleITK")
    from medimg.io.formats import scan_nrrd_label

    r = np.random.default_rng(9)
    labels = np.zeros((23, 70, 90), dtype=np.int32 if "int32" in kind else np.int16 if "int16" in kind else np.uint8)
    labels[3:9, 10:40, 20:31] = 2
    labels[4:19, 30:61, 50:77] = (r.random((15, 31, 27)) < 0.3) * 3
    label = 7 if kind == "absent" else 3
    img = sitk.GetImageFromArray(labels)
    img.SetSpacing((0.7, 0.9, 3.3))
    img.SetOrigin((1.0, -2.0, 30.0))
    path = tmp_path / "labels.nrrd"
    sitk.WriteImage(img, str(path), useCompression=kind != "raw-uint8")
    if "big-endian" in kind:  # rewrite the payload big-endian, raw
        text = path.read_bytes().split(b"\n\n", 1)[0].decode()
        text = text.replace("endian: little", "endian: big").replace("encoding: gzip", "encoding: raw")
        path.write_bytes(text.encode() + b"\n\n" + labels.astype(">i2").tobytes())
    found = scan_nrrd_label(path, label)
    assert found is not None
    _assert_scan_as_read(found, path, label)


@pytest.mark.parametrize("fmt", ["nrrd", "raw.nrrd", "nii.gz"])
@pytest.mark.parametrize("kind", ["ends-uint8", "one-voxel", "int8-negative", "out-of-range", "fraction", "int32",
                                  "int16-misaligned", "int16-many-misaligned"])
def test_scan_label_maps_narrowed_same_as_read(tmp_path, fmt, kind):
    """Integer label maps (gzip, or raw and read in one piece) are narrowed to the label's first and
    last voxel (found by its bytes) before comparing: the label in the first and last slices, a
    single voxel, a negative int8 label, labels that no voxel of the type can equal (300, 2.5:
    absent), int32 maps, and int16 maps where the label's bytes also occur across two voxels
    (value 256 before label 1: bytes 00 01 00 00), once or more than 64 times, give what reading
    the whole map gives."""
    sitk = pytest.importorskip("SimpleITK")
    pytest.importorskip("deflate")
    from medimg.io.formats import scan_nifti_label, scan_nrrd_label

    r = np.random.default_rng(len(kind))
    dtype = {"int8-negative": np.int8, "int32": np.int32}.get(kind, np.int16 if "int16" in kind else np.uint8)
    labels = (r.random((9, 21, 17)) < 0.05).astype(dtype) * 4
    label = {"ends-uint8": 4, "one-voxel": 6, "int8-negative": -3, "out-of-range": 300, "fraction": 2.5,
             "int32": 4}.get(kind, 1)
    if kind == "ends-uint8":
        labels[0, 0, 0] = labels[-1, -1, -1] = 4
    elif kind == "one-voxel":
        labels[5, 20, 16] = 6
    elif kind == "int8-negative":
        labels[2:4, 5:9, 3] = -3
    elif kind == "int16-misaligned":
        labels[1, 3, 4] = labels[8, 20, 10] = 256  # before the first and after the last label voxel
        labels[4:6, 7, 7:9] = 1
    elif kind == "int16-many-misaligned":
        labels[0:2, :, ::2] = 256
        labels[7:9, :, 1::2] = 256
        labels[4, 10, 3] = 1
    img = sitk.GetImageFromArray(labels)
    img.SetSpacing((0.7, 0.9, 3.3))
    path = tmp_path / f"labels.{fmt}"
    sitk.WriteImage(img, str(path), useCompression=fmt != "raw.nrrd")
    found = (scan_nrrd_label if fmt.endswith("nrrd") else scan_nifti_label)(path, label)
    assert found is not None
    _assert_scan_as_read(found, path, label)


def test_extract_scanned_mask_same_as_read_mask(tmp_path, monkeypatch):
    """The PyRadiomics mode gives the same features with the mask scanned or read whole, with and
    without the image read up to the ROI only; a label that is absent is refused either way."""
    from medimg.errors import ParameterError
    from medimg.features import pyradiomics_compat as pc

    image, mask = str(DATA / "brain1_roi_image.nrrd"), str(DATA / "brain1_roi_label.nrrd")
    filtered = {"imageType": {"Original": {}, "Gradient": {}}}
    got = [pc.extract_pyradiomics(image, mask), pc.extract_pyradiomics(image, mask, filtered)]
    monkeypatch.setattr(pc, "_SCAN_MASKS", False)
    want = [pc.extract_pyradiomics(image, mask), pc.extract_pyradiomics(image, mask, filtered)]
    assert got == want
    for scan in (False, True):
        monkeypatch.setattr(pc, "_SCAN_MASKS", scan)
        with pytest.raises(ParameterError, match="not present"):
            pc.extract_pyradiomics(image, mask, label=9)


@pytest.mark.parametrize("kind", ["uint8", "int16", "absent", "scaled"])
def test_scan_nifti_label_same_as_read(tmp_path, kind):
    """A .nii.gz label map scanned for one label: the bounds, ROI and grid that reading it gives;
    a scaled map (scl_slope) is left to the reader."""
    nib = pytest.importorskip("nibabel")
    pytest.importorskip("deflate")
    from medimg.io.formats import scan_nifti_label

    r = np.random.default_rng(12)
    labels = np.zeros((40, 33, 17), dtype=np.int16 if kind == "int16" else np.uint8)  # (x, y, z)
    labels[5:30, 3:20, 4:11] = (r.random((25, 17, 7)) < 0.4) * 2
    affine = np.asarray([[0.0, -0.8, 0.0, 12.0], [0.9, 0.0, 0.0, -4.0], [0.0, 0.0, 2.5, 30.0], [0, 0, 0, 1]])
    img = nib.Nifti1Image(labels, affine)
    if kind == "scaled":
        img.header.set_slope_inter(2.0, 0.0)
    path = tmp_path / "labels.nii.gz"
    nib.save(img, str(path))
    label = 5 if kind == "absent" else 2
    found = scan_nifti_label(path, label)
    if kind == "scaled":
        assert found is None
        return
    _assert_scan_as_read(found, path, label)


@pytest.mark.parametrize("kind", ["ball", "plane-2d", "line", "cluster-pair", "few", "same"])
def test_numpy_cell_search_exact(kind):
    """The NumPy path's cell-pair search (no convex hull) gives exactly the all-pairs maximum."""
    r = np.random.default_rng(len(kind) + 7)
    p = {"ball": lambda: r.normal(size=(1500, 3)), "plane-2d": lambda: r.random((900, 2)),
         "line": lambda: np.outer(r.random(700), [1.0, 2.0, 3.0]),
         "cluster-pair": lambda: np.r_[r.normal(0, 0.01, (500, 3)), r.normal(5, 0.01, (500, 3))],
         "few": lambda: r.random((3, 3)), "same": lambda: np.ones((10, 3))}[kind]()
    assert calc._max_sq_cells(p) == _all_pairs(p)
    assert calc._max_sq_cells(p, 1e9) == 1e9  # nothing beats the best given
