"""The SUV decision tree, branch by branch, on PET DICOM series written here; factors derived by hand.

Every expected factor below is the SUVbw formula evaluated directly in the test,
weight [g] / (dose [Bq] x 2^(-elapsed / half-life)), with the elapsed time worked out by hand
from the header written: none of it comes from medimg's code. Pixel values are stored as 16-bit
integers with a per-image slope, so voxel checks allow the quantisation (rtol 1e-4); the
factors themselves are exact.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medimg import Image, filters, io
from medimg.errors import ParameterError
from medimg.pet import SuvError, body, read_pet, suv_scale, to_suv, write_pet_series

HALF = 6586.2  # F-18 half-life, s
W, DOSE = 70.0, 370e6  # the writer's default header: 70 kg, 370 MBq at 10:00, series at 11:00
ACTIVITY = 10000.0  # Bq/ml in every voxel


def bw_factor(elapsed_s: float, *, weight: float = W, dose: float = DOSE, half: float = HALF) -> float:
    return weight * 1000.0 / (dose * 2.0 ** (-elapsed_s / half))


def _write(tmp_path: Path, name: str = "pet", *, n: int = 4, value: float = ACTIVITY, **kw) -> Path:
    img = Image.from_geometry(np.full((n, 6, 5), value), spacing=(4.0, 4.0, 3.0), origin=(-10.0, 5.0, 20.0))
    write_pet_series(img, tmp_path / name, seed=name, **kw)
    return tmp_path / name


def _scale(tmp_path: Path, name: str = "pet", *, suv: dict | None = None, **kw):
    image = read_pet(_write(tmp_path, name, **kw))
    return suv_scale(image.meta, n_slices=image.spatial_shape[0], **(suv or {})), image


def _branches(scale) -> str:
    return " | ".join(scale.branches)


# ------------------------------------------------------------------ Units BQML, decay START
def test_bqml_start_series_reference(tmp_path: Path) -> None:
    scale, image = _scale(tmp_path)
    # injection 10:00:00 (Radiopharmaceutical Start DateTime), series 11:00:00 = first acquisition
    assert scale.factor == pytest.approx(np.full(4, bw_factor(3600.0)), rel=1e-12)
    assert scale.values["elapsed_s"] == pytest.approx(3600.0)
    assert "decay reference = Series Date/Time" in _branches(scale)
    assert "Radiopharmaceutical Start DateTime (0018,1078)" in _branches(scale)
    out = to_suv(image)
    np.testing.assert_allclose(out.array, ACTIVITY * bw_factor(3600.0), rtol=1e-4)
    assert out.meta["units"] == "g/ml"
    step = out.meta["history"][-1]
    assert step["op"] == "pet.to_suv" and step["suv_type"] == "bw" and step["weight_kg"] == W
    assert step["branches"] == list(scale.branches)


def test_regression_acquisition_before_series_time(tmp_path: Path) -> None:
    """A post-processed multi-bed series: Series Time 11:30 is after its images' acquisitions
    (11:05 .. 11:20; the earliest is not the first file). The reference is the earliest
    acquisition, 11:05 (3900 s after the 10:00 injection); the series time would give an SUV
    2^(1500/6586.2) = 17 % too high."""
    acq = ["112000", "110500", "111000", "111500"]
    kw = {"series": {"SeriesTime": "113000"}, "per_image": [{"AcquisitionTime": t} for t in acq]}
    folder = _write(tmp_path, **kw)
    expected = bw_factor(3900.0)
    scale = suv_scale(read_pet(folder).meta)
    assert scale.factor == pytest.approx(np.full(4, expected), rel=1e-12)
    assert "post-processed" in _branches(scale)
    assert "earliest Acquisition Date/Time (0008,0022/0032) 2024-01-02T11:05:00" in _branches(scale)
    assert bw_factor(5400.0) / expected == pytest.approx(2 ** (1500 / HALF))  # what the series time gave
    # the `medimg filter SERIES OUT -m suv` path: io.read + the registered filter
    out = filters.apply(io.read(folder), "suv")
    np.testing.assert_allclose(out.array, ACTIVITY * expected, rtol=1e-4)
    assert out.meta["history"][-1]["op"] == "filters.suv"
    assert any("post-processed" in b for b in out.meta["history"][-1]["branches"])


@pytest.mark.parametrize("vendor", ["ge_scan_datetime", "siemens_decay_datetime"])
def test_post_processed_series_uses_vendor_private_scan_time(tmp_path: Path, vendor: str) -> None:
    # series 12:00 after the acquisitions (earliest 11:05); the private time says 11:00
    kw = {"series": {"SeriesTime": "120000", "AcquisitionTime": "110500"}, "private": {vendor: "20240102110000"}}
    scale, _ = _scale(tmp_path, **kw)
    assert scale.factor[0] == pytest.approx(bw_factor(3600.0), rel=1e-12)
    assert "private" in _branches(scale) and "decay reference = " in _branches(scale)


@pytest.mark.parametrize("value", ["20240102113000", "20240101110000"])
def test_implausible_private_scan_time_is_not_used(tmp_path: Path, value: str) -> None:
    # after the earliest acquisition (11:30 > 11:05), or a day early (before the injection,
    # as de-identification that shifts only some dates leaves it): the earliest acquisition wins
    kw = {"series": {"SeriesTime": "120000", "AcquisitionTime": "110500"},
          "private": {"siemens_decay_datetime": value}}
    scale, _ = _scale(tmp_path, **kw)
    assert scale.factor[0] == pytest.approx(bw_factor(3900.0), rel=1e-12)
    assert "not used" in _branches(scale)


def test_start_time_without_date_takes_the_series_date(tmp_path: Path) -> None:
    scale, _ = _scale(tmp_path, radiopharmaceutical={"RadiopharmaceuticalStartDateTime": None})
    assert scale.factor[0] == pytest.approx(bw_factor(3600.0), rel=1e-12)
    assert "Radiopharmaceutical Start Time (0018,1072) 10:00:00 on the date of the series" in _branches(scale)


def test_start_time_crossing_midnight(tmp_path: Path) -> None:
    # injected 23:30 on 2 January, scanned 00:30 on 3 January; only the start time is known
    kw = {"series": {"SeriesDate": "20240103", "SeriesTime": "003000", "AcquisitionDate": "20240103",
                     "AcquisitionTime": "003000"},
          "radiopharmaceutical": {"RadiopharmaceuticalStartDateTime": None, "RadiopharmaceuticalStartTime": "233000"}}
    scale, _ = _scale(tmp_path, **kw)
    assert scale.values["elapsed_s"][0] == pytest.approx(3600.0)
    assert scale.values["injection_time"] == "2024-01-02T23:30:00"
    assert "crossed midnight" in _branches(scale)


def test_ge_private_injection_datetime(tmp_path: Path) -> None:
    rp = {"RadiopharmaceuticalStartDateTime": None, "RadiopharmaceuticalStartTime": None}
    scale, _ = _scale(tmp_path, radiopharmaceutical=rp, private={"ge_admin_datetime": "20240102093000"})
    assert scale.factor[0] == pytest.approx(bw_factor(5400.0), rel=1e-12)
    assert "GE private admin_datetime (0009,xx3B)" in _branches(scale)
    # a GE time that contradicts the standard Start Time is not used
    rp = {"RadiopharmaceuticalStartDateTime": None, "RadiopharmaceuticalStartTime": "100000"}
    scale, _ = _scale(tmp_path, "pet2", radiopharmaceutical=rp, private={"ge_admin_datetime": "20240102093000"})
    assert scale.factor[0] == pytest.approx(bw_factor(3600.0), rel=1e-12)
    assert "disagrees" in _branches(scale)


def test_datetime_with_utc_offset(tmp_path: Path) -> None:
    # 09:00 UTC = 10:00 at UTC+1, the scanner's zone
    kw = {"series": {"TimezoneOffsetFromUTC": "+0100"},
          "radiopharmaceutical": {"RadiopharmaceuticalStartDateTime": "20240102090000+0000"}}
    scale, _ = _scale(tmp_path, **kw)
    assert scale.factor[0] == pytest.approx(bw_factor(3600.0), rel=1e-12)


# ------------------------------------------------------------------ ADMIN / NONE
def test_decay_correction_admin(tmp_path: Path) -> None:
    rp = {"RadiopharmaceuticalStartDateTime": None, "RadiopharmaceuticalStartTime": None}
    scale, _ = _scale(tmp_path, decay_correction="ADMIN", radiopharmaceutical=rp)
    assert scale.factor[0] == pytest.approx(W * 1000.0 / DOSE, rel=1e-12)  # no decay, no injection time needed
    assert "ADMIN" in _branches(scale)


def test_decay_correction_none_per_image(tmp_path: Path) -> None:
    # four 2-minute frames starting 11:00, 11:02, 11:04, 11:06; not decay corrected
    acq = ["110000", "110200", "110400", "110600"]
    per = [{"AcquisitionTime": t, "ActualFrameDuration": 120000} for t in acq]
    corrected = ("NORM", "DTIM", "ATTN", "SCAT", "RAN")
    scale, image = _scale(tmp_path, decay_correction="NONE", corrected_image=corrected, per_image=per)
    lam, tau = math.log(2) / HALF, 120.0
    mean_count = math.log(lam * tau / (1 - math.exp(-lam * tau))) / lam  # 59.9 s into each frame
    assert mean_count == pytest.approx(59.95, abs=0.05)
    expected = [bw_factor(3600.0 + 120.0 * k + mean_count) for k in range(4)]
    np.testing.assert_allclose(scale.factor, expected, rtol=1e-12)
    out = to_suv(image)
    np.testing.assert_allclose(out.array.mean(axis=(1, 2)), ACTIVITY * np.array(expected), rtol=1e-4)
    assert isinstance(out.meta["suv"]["factor"], list)
    # without Actual Frame Duration: each frame's start, and the branch says so
    per = [{"AcquisitionTime": t, "ActualFrameDuration": None} for t in acq]
    scale, _ = _scale(tmp_path, "pet2", decay_correction="NONE", corrected_image=corrected, per_image=per)
    np.testing.assert_allclose(scale.factor, [bw_factor(3600.0 + 120.0 * k) for k in range(4)], rtol=1e-12)
    assert "frame start" in _branches(scale)


# ------------------------------------------------------------------ CNTS (Philips) and GML
def test_cnts_with_philips_suv_scale_factor(tmp_path: Path) -> None:
    scale, image = _scale(tmp_path, units="CNTS", value=2000.0, private={"philips_suv_factor": 0.000551})
    assert scale.factor == pytest.approx(np.full(4, 0.000551), rel=1e-12)
    assert "(7053,xx00)" in _branches(scale)
    np.testing.assert_allclose(to_suv(image).array, 2000.0 * 0.000551, rtol=1e-4)


def test_cnts_with_philips_activity_concentration_factor(tmp_path: Path) -> None:
    scale, _ = _scale(tmp_path, units="CNTS", private={"philips_activity_factor": 1.602563})
    assert scale.factor[0] == pytest.approx(1.602563 * bw_factor(3600.0), rel=1e-12)
    assert "(7053,xx09)" in _branches(scale)


def test_cnts_with_both_factors_and_an_override_uses_the_activity_factor(tmp_path: Path) -> None:
    private = {"philips_suv_factor": 0.000551, "philips_activity_factor": 1.602563}
    scale, _ = _scale(tmp_path, units="CNTS", private=private, suv={"weight_kg": 80.0})
    assert scale.factor[0] == pytest.approx(1.602563 * bw_factor(3600.0, weight=80.0), rel=1e-12)
    scale, _ = _scale(tmp_path, "pet2", units="CNTS", private=private)
    assert scale.factor[0] == pytest.approx(0.000551, rel=1e-12)  # QIBA: the SUV factor first
    with pytest.raises(SuvError, match=r"\(7053,xx00\).*weight_kg"):
        _scale(tmp_path, "pet3", units="CNTS", private={"philips_suv_factor": 0.000551}, suv={"weight_kg": 80.0})


@pytest.mark.parametrize("syntax", ["implicit", "explicit"])
def test_private_elements_are_found_through_their_creators(tmp_path: Path, syntax: str) -> None:
    # implicit VR: the private values arrive as raw bytes (VR UN) and are still found and parsed
    kw = {"transfer_syntax": syntax, "series": {"SeriesTime": "120000", "AcquisitionTime": "110500"},
          "private": {"ge_scan_datetime": "20240102110000", "philips_activity_factor": 1.5}}
    image = read_pet(_write(tmp_path, **kw))
    inst = image.meta["pet"]["instances"][0]
    assert inst["ge_scan_datetime"] == "20240102110000" and inst["philips_activity_factor"] == 1.5
    assert suv_scale(image.meta).factor[0] == pytest.approx(bw_factor(3600.0), rel=1e-12)


def test_per_image_philips_factors(tmp_path: Path) -> None:
    per = [{"philips_suv_factor": f} for f in (0.0005, 0.0006, 0.0007, 0.0008)]
    scale, image = _scale(tmp_path, units="CNTS", value=1000.0, per_image=per)
    np.testing.assert_allclose(scale.factor, [0.0005, 0.0006, 0.0007, 0.0008], rtol=1e-12)
    np.testing.assert_allclose(to_suv(image).array.mean(axis=(1, 2)), [0.5, 0.6, 0.7, 0.8], rtol=1e-4)


def test_gml_is_suv_already(tmp_path: Path) -> None:
    scale, image = _scale(tmp_path, units="GML", value=3.5)
    assert scale.factor == pytest.approx(np.ones(4))
    lbm = 9270 * 70 / (6680 + 216 * 70 / 1.75**2)  # Janmahasatian, man, 70 kg, 1.75 m
    sul = to_suv(image, suv_type="lbm-janma")
    np.testing.assert_allclose(sul.array, 3.5 * lbm / 70, rtol=1e-4)
    with pytest.raises(SuvError, match="GML"):
        _scale(tmp_path, "pet2", units="GML", suv={"dose_bq": 1e8})
    with pytest.raises(SuvError, match=r"SUV Type \(0054,1006\)"):
        _scale(tmp_path, "pet3", units="GML", series={"SUVType": "LBM"})


# ------------------------------------------------------------------ overrides
def test_overrides_weight_dose_injection(tmp_path: Path) -> None:
    image = read_pet(_write(tmp_path))
    assert suv_scale(image.meta, weight_kg=35.0).factor[0] == pytest.approx(bw_factor(3600.0) / 2, rel=1e-12)
    assert suv_scale(image.meta, dose_bq=740e6).factor[0] == pytest.approx(bw_factor(3600.0) / 2, rel=1e-12)
    for text in ("2024-01-02T10:30:00", "20240102103000", "10:30", "103000"):
        scale = suv_scale(image.meta, injection_time=text)
        assert scale.factor[0] == pytest.approx(bw_factor(1800.0), rel=1e-12), text
    scale = suv_scale(image.meta, weight_kg=35.0)
    assert any("weight_kg 35 kg from --weight-kg (the header says 70)" in b for b in scale.branches)


# ------------------------------------------------------------------ other normalisations
def test_body_size_formulas_by_hand() -> None:
    # man, 70 kg, 175 cm: James 1.10*70 - 128*(70/175)^2 = 77 - 20.48 = 56.52 kg
    assert body.lean_body_mass_james(70, 1.75, "M") == pytest.approx(56.52, abs=1e-9)
    # woman, 60 kg, 165 cm: 1.07*60 - 148*(60/165)^2 = 64.2 - 19.5702... kg
    assert body.lean_body_mass_james(60, 1.65, "F") == pytest.approx(64.2 - 148 * (60 / 165) ** 2, abs=1e-9)
    # Janmahasatian, BMI 70/1.75^2 = 22.857: 9270*70 / (6680 + 216*22.857) = 55.857 kg
    assert body.lean_body_mass_janmahasatian(70, 1.75, "M") == pytest.approx(648900 / (6680 + 216 * 70 / 1.75**2))
    assert body.lean_body_mass_janmahasatian(70, 1.75, "M") == pytest.approx(55.857, abs=1e-3)
    assert body.lean_body_mass_janmahasatian(60, 1.65, "F") == pytest.approx(9270 * 60 / (8780 + 244 * 60 / 1.65**2))
    # Du Bois: 70 kg, 175 cm -> 1.848 m^2 (the usual nomogram value 1.85)
    assert body.body_surface_area(70, 1.75) == pytest.approx(0.007184 * 70**0.425 * 175**0.725)
    assert body.body_surface_area(70, 1.75) == pytest.approx(1.85, abs=0.005)
    # ideal body weight: 48 + 1.06*(175-152) = 72.38 kg; 45.5 + 0.91*(165-152) = 57.33 kg
    assert body.ideal_body_weight(1.75, "M") == pytest.approx(72.38)
    assert body.ideal_body_weight(1.65, "F") == pytest.approx(57.33)
    with pytest.raises(ParameterError, match="Janmahasatian"):  # James fails for high BMI
        body.lean_body_mass_james(200, 1.50, "F")
    with pytest.raises(ParameterError, match="--sex"):
        body.lean_body_mass_james(70, 1.75, "O")


@pytest.mark.parametrize(("suv_type", "units", "ratio"), [
    ("lbm-james", "g/ml", 56.52 / 70),
    ("lbm-janma", "g/ml", 9270 / (6680 + 216 * 70 / 1.75**2)),
    ("ibw", "g/ml", 72.38 / 70),
    ("bsa", "cm2/ml", 0.007184 * 70**0.425 * 175**0.725 * 1e4 / 70000),
])
def test_normalisations_rescale_suvbw(tmp_path: Path, suv_type: str, units: str, ratio: float) -> None:
    image = read_pet(_write(tmp_path))
    out = to_suv(image, suv_type=suv_type)
    assert out.meta["units"] == units
    assert out.meta["suv"]["factor"] == pytest.approx(bw_factor(3600.0) * ratio, rel=1e-9)
    # height and sex from the flags when the header lacks them
    image = read_pet(_write(tmp_path, "bare", patient={"PatientSize": None, "PatientSex": None}))
    with pytest.raises(SuvError, match=r"\(0010,1020\).*--height-m"):
        to_suv(image, suv_type=suv_type)
    given = to_suv(image, suv_type=suv_type, height_m=1.75, sex="M")
    assert given.meta["suv"]["factor"] == pytest.approx(out.meta["suv"]["factor"], rel=1e-12)


# ------------------------------------------------------------------ bad input: one clear error each
@pytest.mark.parametrize(("kw", "pattern"), [
    ({"patient": {"PatientWeight": None}}, r"Patient's Weight \(0010,1030\) is missing.*--weight-kg"),
    ({"patient": {"PatientWeight": 0.0}}, r"\(0010,1030\).*--weight-kg"),
    ({"patient": {"PatientWeight": 70000.0}}, r"\(0010,1030\) is 70000 kg.*grams"),
    ({"radiopharmaceutical": {"RadionuclideTotalDose": None}}, r"\(0018,1074\) is missing.*--dose-bq"),
    ({"radiopharmaceutical": {"RadionuclideTotalDose": 370.0}}, r"\(0018,1074\).*MBq.*--dose-bq"),
    ({"radiopharmaceutical": {"RadionuclideHalfLife": None}}, r"\(0018,1075\) is missing.*--half-life-s"),
    ({"radiopharmaceutical": {"RadiopharmaceuticalStartDateTime": None, "RadiopharmaceuticalStartTime": None}},
     r"\(0018,1078\).*\(0018,1072\).*--injection-time"),
    ({"units": "PROPCNTS"}, r"Units \(0054,1001\) is 'PROPCNTS'"),
    ({"units": None}, r"Units \(0054,1001\) is 'missing'"),
    ({"units": "CNTS"}, r"CNTS.*\(7053,xx00\).*\(7053,xx09\)"),
    ({"decay_correction": None}, r"Decay Correction \(0054,1102\)"),
    ({"corrected_image": ("NORM", "DECY")}, r"Corrected Image \(0028,0051\).*ATTN"),
    ({"decay_correction": "NONE"}, r"NONE.*DECY"),
    ({"series": {"SeriesTime": None}}, r"Series Time \(0008,0031\) is missing"),
    ({"radiopharmaceutical": {"RadiopharmaceuticalStartDateTime": "20240102130000"}}, r"after the decay reference"),
])
def test_bad_headers_name_the_tag_and_the_flag(tmp_path: Path, kw: dict, pattern: str) -> None:
    image = read_pet(_write(tmp_path, **kw))
    with pytest.raises(SuvError, match=pattern) as err:
        to_suv(image)
    assert "\n" not in str(err.value)


def test_inconsistent_series_and_dynamic_start(tmp_path: Path) -> None:
    per = [{"Units": u} for u in ("BQML", "BQML", "CNTS", "BQML")]
    with pytest.raises(SuvError, match=r"Units \(0054,1001\) differs"):
        _scale(tmp_path, per_image=per)
    # a dynamic scan that starts 30 s before the recorded injection is accepted and noted
    scale, _ = _scale(tmp_path, "dyn", radiopharmaceutical={"RadiopharmaceuticalStartDateTime": "20240102110030"})
    assert scale.factor[0] == pytest.approx(bw_factor(-30.0), rel=1e-12)
    assert "before the injection" in _branches(scale)


def test_non_pet_and_hand_built_meta() -> None:
    with pytest.raises(SuvError, match="no PET tags"):
        to_suv(Image(np.zeros((2, 3, 3), np.float32)))
    with pytest.raises(SuvError, match="not PT"):
        suv_scale({"pet": {"Modality": "CT", "Units": "BQML"}})
    # meta assembled by hand (no per-image list): its own acquisition time stands for the series'
    pet = {"Units": "BQML", "DecayCorrection": "START", "PatientWeight": 70.0, "SeriesDate": "20240102",
           "SeriesTime": "110000", "AcquisitionDate": "20240102", "AcquisitionTime": "111500",
           "Radiopharmaceutical": {"RadiopharmaceuticalStartTime": "100000", "RadionuclideTotalDose": 370e6,
                                   "RadionuclideHalfLife": 6586.2}}
    scale = suv_scale({"pet": pet})
    assert scale.factor[0] == pytest.approx(bw_factor(3600.0), rel=1e-12)
    assert "lists no images" in _branches(scale)


@pytest.mark.tools
@pytest.mark.parametrize("syntax", ["explicit", "implicit"])
def test_written_pet_series_pass_dciodvfy(tmp_path: Path, syntax: str) -> None:
    import shutil
    import subprocess

    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not on PATH")
    folder = _write(tmp_path, transfer_syntax=syntax, private={"philips_activity_factor": 1.5,
                                                                 "siemens_decay_datetime": "20240102110000"})
    result = subprocess.run(["dciodvfy", str(folder / "0002.dcm")], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    assert "PETImage" in lines[0]
    assert not [line for line in lines if line.startswith("Error")], lines


def test_hostile_values_still_read_and_name_the_tag(tmp_path: Path) -> None:
    import pydicom
    from pydicom.dataelem import DataElement

    def spoil(folder: Path, tag: int | None = None, private: int | None = None) -> Image:
        for path in sorted(folder.glob("*.dcm")):
            ds = pydicom.dcmread(path)
            if private is not None:
                tag = ds.private_block(0x7053, "Philips PET Private Group").get_tag(private)
            ds[tag] = DataElement(tag, "LO", "n/a")  # a number written as text
            ds.save_as(path)
        return io.read(folder)  # the image still reads

    image = spoil(_write(tmp_path, "w"), tag=0x00101030)  # Patient's Weight
    assert image.meta["pet"]["PatientWeight"] == "n/a"
    with pytest.raises(SuvError, match=r"Patient's Weight \(0010,1030\) is 'n/a'.*--weight-kg"):
        to_suv(image)
    image = spoil(_write(tmp_path, "p", units="CNTS", private={"philips_suv_factor": 0.0005}), private=0x00)
    with pytest.raises(SuvError, match=r"SUV Scale Factor \(7053,xx00\) must be a number.*'n/a'"):
        to_suv(image)
