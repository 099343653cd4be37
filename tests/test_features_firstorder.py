"""First-order features against the IBSI digital phantom reference values and exact answers."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from medimg import Image
from medimg.core.registry import registry
from medimg.errors import GeometryMismatchError, ParameterError, UnknownNameError
from medimg.features import FeatureSpec, extract, feature_specs
from medimg.features.firstorder import (
    FIRSTORDER_SPECS,
    discretise_fixed_bin_size,
    firstorder_features,
)

PHANTOM = Path(__file__).parent / "data" / "ibsi1-digital-phantom"


@pytest.fixture(scope="module")
def phantom() -> tuple[Image, Image]:
    from medimg.io import read

    return read(PHANTOM / "image.nii.gz"), read(PHANTOM / "mask.nii.gz")


@pytest.fixture(scope="module")
def references() -> dict[str, tuple[str, float, float]]:
    """IBSI code -> (IBSI feature name, reference value, tolerance) for the 'dig' phantom.

    Only the families whose features the ``firstorder`` family computes: intensity-based
    statistics, intensity histogram (entropy) and morphology (voxel-counting volume).
    """
    families = {"Statistics", "Intensity histogram", "Morphology"}
    out: dict[str, tuple[str, float, float]] = {}
    with open(PHANTOM / "reference_values.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if not row["dataset"].startswith("digital phantom") or row["family"] not in families:
                continue
            if row["reference_value"]:
                out[row["ibsi_code"]] = (
                    row["ibsi_feature_name"],
                    float(row["reference_value"]),
                    float(row["tolerance"]),
                )
    return out


def _within_reference(got: float, ref: float, tol: float) -> bool:
    """IBSI values are reported to 3 significant digits; a tolerance of 0 means 'equal when
    rounded to them'. Accept |got - ref| <= tol + half a unit of the 3rd significant digit."""
    rounding = 0.0 if ref == 0 else 0.5 * 10.0 ** (math.floor(math.log10(abs(ref))) - 2)
    return abs(got - ref) <= tol + rounding * (1 + 1e-9)


@pytest.mark.parametrize("spec", FIRSTORDER_SPECS, ids=lambda s: f"{s.name}-{s.ibsi_code}")
def test_matches_ibsi_digital_phantom(spec, phantom, references):
    image, mask = phantom
    # The phantom's grey levels are already integers: a bin width of 1 leaves them unchanged.
    got = firstorder_features(image, mask, bin_width=1.0)[spec.name]
    assert spec.ibsi_code in references, f"no IBSI reference for {spec.ibsi_code}"
    ibsi_name, ref, tol = references[spec.ibsi_code]
    assert spec.ibsi_name == ibsi_name  # the code we carry names the feature we compute
    assert _within_reference(got, ref, tol), f"{spec.name}: {got} vs IBSI {ref} +- {tol}"


def test_every_first_order_statistic_of_ibsi_is_implemented(references):
    ours = {s.ibsi_code for s in FIRSTORDER_SPECS}
    stats = {code for code in references if code not in {"TLU2", "YEKZ"}}
    ibsi_statistics = stats & {
        "Q4LE",
        "ECT3",
        "KE2A",
        "IPH6",
        "Y12H",
        "1GSF",
        "QG58",
        "8DWT",
        "84IY",
        "SALO",
        "2OJQ",
        "4FUA",
        "1128",
        "N72L",
        "7TET",
        "9S40",
        "N8CA",
        "5ZWQ",
    }
    assert len(ibsi_statistics) == 18
    assert ibsi_statistics <= ours


def test_against_scipy_on_random_data():
    from scipy import stats

    rng = np.random.default_rng(3)
    arr = rng.gamma(2.0, 30.0, size=(6, 7, 8)) - 40.0
    img = Image.from_geometry(arr, spacing=(0.8, 0.8, 2.5))
    mask = img.with_array((rng.random(arr.shape) < 0.6).astype(np.uint8))
    x = arr[mask.array == 1]
    got = firstorder_features(img, mask)
    assert got["mean"] == pytest.approx(x.mean())
    assert got["variance"] == pytest.approx(np.var(x))
    assert got["skewness"] == pytest.approx(stats.skew(x, bias=True))
    assert got["kurtosis"] == pytest.approx(stats.kurtosis(x, fisher=True, bias=True))
    assert got["median"] == pytest.approx(np.median(x))
    assert got["interquartile_range"] == pytest.approx(stats.iqr(x))
    assert got["mean_absolute_deviation"] == pytest.approx(np.mean(np.abs(x - x.mean())))
    assert got["coefficient_of_variation"] == pytest.approx(np.std(x) / np.mean(x))
    assert got["root_mean_square"] == pytest.approx(np.sqrt(np.mean(x**2)))
    assert got["energy"] == pytest.approx(np.sum(x**2))
    assert got["volume_mm3"] == pytest.approx(x.size * 0.8 * 0.8 * 2.5)


def test_exact_small_region():
    # Intensities 1..10 in a 1 x 2 x 5 region.
    img = Image(np.arange(1.0, 11.0).reshape(1, 2, 5))
    mask = img.with_array(np.ones((1, 2, 5), dtype=np.uint8))
    got = firstorder_features(img, mask, bin_width=5.0)
    assert got["mean"] == 5.5
    assert got["variance"] == 8.25
    assert got["skewness"] == pytest.approx(0.0, abs=1e-12)
    assert got["percentile_10"] == pytest.approx(1.9)
    assert got["percentile_90"] == pytest.approx(9.1)
    # P10..P90 keeps 2..9 (mean 5.5): |dev| = 3.5, 2.5, 1.5, 0.5 twice each -> 2.0
    assert got["robust_mean_absolute_deviation"] == pytest.approx(2.0)
    assert got["median_absolute_deviation"] == pytest.approx(2.5)
    assert got["quartile_coefficient_of_dispersion"] == pytest.approx(4.5 / 11.0)
    # Bins of width 5 from 1: [1, 6) and [6, 11) hold 5 voxels each -> 1 bit.
    assert got["entropy"] == pytest.approx(1.0)
    assert got["volume_mm3"] == 10.0


def test_entropy_uses_bin_width_in_image_units():
    img = Image(np.arange(100.0).reshape(1, 10, 10))
    mask = img.with_array(np.ones((1, 10, 10), dtype=np.uint8))
    assert firstorder_features(img, mask, bin_width=25.0)["entropy"] == pytest.approx(2.0)
    assert firstorder_features(img, mask, bin_width=50.0)["entropy"] == pytest.approx(1.0)
    assert firstorder_features(img, mask, bin_width=1000.0)["entropy"] == pytest.approx(0.0)
    np.testing.assert_array_equal(
        discretise_fixed_bin_size(np.array([-30.0, -5.0, -4.9, 20.0]), bin_width=25.0), [1, 2, 2, 3]
    )


def test_constant_region_follows_ibsi_conventions():
    img = Image(np.zeros((1, 2, 2)))
    mask = img.with_array(np.ones((1, 2, 2), dtype=np.uint8))
    got = firstorder_features(img, mask)
    assert got["skewness"] == 0.0 and got["kurtosis"] == 0.0
    assert math.isnan(got["coefficient_of_variation"])
    assert math.isnan(got["quartile_coefficient_of_dispersion"])


def test_label_selects_region_and_input_is_untouched():
    arr = np.array([[[1.0, 2.0, 10.0, 20.0]]])
    img = Image(arr)
    labels = np.array([[[1, 1, 2, 2]]], dtype=np.uint8)
    mask = img.with_array(labels)
    second = firstorder_features(img, mask, label=2)
    assert second["mean"] == 15.0
    # Two voxels: none lies between P10 = 11 and P90 = 19, so the robust MAD is undefined.
    assert math.isnan(second["robust_mean_absolute_deviation"])
    assert extract(img, mask, families="firstorder", label=1)["firstorder.mean"] == 1.5
    np.testing.assert_array_equal(img.array, [[[1.0, 2.0, 10.0, 20.0]]])


def test_errors_are_clear():
    img = Image.from_geometry(np.ones((2, 2, 2)), spacing=(1, 1, 1))
    mask = img.with_array(np.ones((2, 2, 2), dtype=np.uint8))
    with pytest.raises(ParameterError, match="no voxel with label 3 .*labels present: 1"):
        firstorder_features(img, mask, label=3)
    shifted = Image.from_geometry(
        np.ones((2, 2, 2), dtype=np.uint8), spacing=(1, 1, 1), origin=(0.5, 0, 0)
    )
    with pytest.raises(GeometryMismatchError):
        extract(img, shifted)
    with pytest.raises(ParameterError, match="bin_width"):
        extract(img, mask, bin_width=0.0)
    with pytest.raises(ParameterError, match="did you mean 'bin_width'"):
        extract(img, mask, bin_widht=10.0)
    with pytest.raises(UnknownNameError, match="did you mean 'firstorder'"):
        extract(img, mask, families=("firstordr",))
    nan_img = img.with_array(np.full((2, 2, 2), np.nan))
    with pytest.raises(ParameterError, match="NaN"):
        extract(nan_img, mask)


def test_extract_keys_and_feature_table():
    img = Image(np.arange(8.0).reshape(2, 2, 2))
    mask = img.with_array(np.ones((2, 2, 2), dtype=np.uint8))
    out = extract(img, mask, families="firstorder")
    specs = feature_specs(["firstorder"])
    assert list(out) == [s.key for s in specs] == [f"firstorder.{s.name}" for s in FIRSTORDER_SPECS]
    assert all(isinstance(v, float) for v in out.values())
    assert "firstorder" in registry("features")
    assert all(isinstance(s, FeatureSpec) and s.family == "firstorder" for s in specs)
    assert len({s.ibsi_code for s in specs}) == len(specs)
    assert {s.ibsi_code for s in specs} >= {"Q4LE", "TLU2", "YEKZ"}
