"""A seeded synthetic CT cohort, written as valid DICOM series with known ground truth.

Each patient has one CT study (``baseline``) and, for a fraction of them, a second one
(``followup``): the same anatomy moved by a known rigid transform, with the lesion grown by a
known factor. Every lesion has a voxel mask. Demographics are realistic-looking PHI so that the
files can exercise de-identification. See ``docs/datasets.md`` for the layout.

Conventions: all positions are LPS millimetres (DICOM patient space); arrays are (z, y, x);
``spacing_mm`` is (x, y, z), as everywhere in medimg.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.files import atomic_dir, atomic_path
from medimg.core.image import Image
from medimg.datasets.phantoms import Ellipsoid, LobulatedShape, RandomField, random_rotation
from medimg.errors import FileFormatError, ParameterError

__all__ = ["Scanner", "SCANNERS", "CohortRow", "Cohort", "make_cohort", "load_cohort"]


@dataclass(frozen=True)
class Scanner:
    """A simulated CT scanner model.

    Attributes
    ----------
    manufacturer, model
        DICOM Manufacturer and Manufacturer's Model Name.
    noise_factor
        Multiplies ``noise_hu`` (the noise standard deviation in HU) for this scanner.
    blur_mm
        In-plane standard deviation (mm) of the Gaussian that models the reconstruction
        kernel's resolution; the noise is correlated by the same kernel.
    kernel
        DICOM Convolution Kernel.
    """

    manufacturer: str
    model: str
    noise_factor: float
    blur_mm: float
    kernel: str


#: The two scanner models: a sharp, noisier one and a smooth, quieter one.
SCANNERS: tuple[Scanner, ...] = (
    Scanner("ACME", "Voxa 64", noise_factor=1.0, blur_mm=0.35, kernel="B60s"),
    Scanner("ACME", "Helix Pro 128", noise_factor=0.7, blur_mm=0.85, kernel="B30s"),
)

# (institution, scanner index, station name, device serial number): each site has one scanner.
_SITES = (
    ("St. Elsewhere General Hospital", 0, "ELSCT01", "VX64-00417"),
    ("Springfield Memorial Hospital", 1, "SPRCT02", "HP128-1093"),
    ("Mercy West Medical Center", 0, "MWCT01", "VX64-00862"),
    ("County General Hospital", 1, "CGHCT03", "HP128-2210"),
)
_FAMILY = (
    "DOE", "SMITH", "JOHNSON", "MILLER", "GARCIA", "MARTIN", "MULLER", "ROSSI", "NOVAK", "SILVA",
    "TANAKA", "KOWALSKI", "DUBOIS", "JANSEN", "HANSEN", "NGUYEN", "OKAFOR", "PATEL", "COHEN", "LARSEN",
)
_GIVEN = {
    "F": ("JANE", "MARY", "ANNA", "SOPHIE", "MARIA", "ELENA", "CLARA", "INGRID", "AKIKO", "GRACE"),
    "M": ("JOHN", "JAMES", "PETER", "LUCAS", "MARCO", "TOMAS", "HENRIK", "KENJI", "DAVID", "SAMUEL"),
}
_PHYSICIANS = (
    "HOUSE^GREGORY", "GREY^MEREDITH", "KILDARE^JAMES", "QUINN^MICHAELA", "ROSS^DOUGLAS",
    "WELBY^MARCUS", "CARTER^JOHN", "YANG^CRISTINA",
)

_AIR_HU, _FAT_HU, _TISSUE_HU, _LUNG_HU, _BONE_HU = -1000.0, -100.0, 40.0, -850.0, 700.0
_MARGIN_MM = 1.5  # lesion clearance from lungs, bone, fat and the field of view
_STUDY_LABELS = ("baseline", "followup")
_CSV_NAME, _TRUTH_NAME = "cohort.csv", "ground_truth.json"


# ------------------------------------------------------------------------------ public types
@dataclass(frozen=True)
class CohortRow:
    """One study of the cohort (one row of ``cohort.csv``).

    Attributes
    ----------
    patient_id
        DICOM Patient ID (also the patient's folder name).
    study_label
        ``"baseline"`` or ``"followup"`` (the study's folder name).
    timepoint
        0 for baseline, 1 for follow-up.
    label
        1 malignant, 0 benign.
    manufacturer, scanner_model, institution
        Equipment and site.
    sex
        ``"F"`` or ``"M"``.
    age_years
        Age at this study date, in whole years.
    study_date
        ``YYYYMMDD``.
    lesion_voxels
        Voxels in the lesion mask.
    lesion_volume_mm3
        ``lesion_voxels`` x voxel volume, mm^3.
    lesion_volume_true_mm3
        Volume of the continuous lesion shape, mm^3.
    ct_dir, mask_path
        The series folder and the lesion mask, relative to the cohort folder (POSIX).
    study_uid, series_uid
        Study and Series Instance UIDs.
    """

    patient_id: str
    study_label: str
    timepoint: int
    label: int
    manufacturer: str
    scanner_model: str
    institution: str
    sex: str
    age_years: int
    study_date: str
    lesion_voxels: int
    lesion_volume_mm3: float
    lesion_volume_true_mm3: float
    ct_dir: str
    mask_path: str
    study_uid: str
    series_uid: str


_INT_FIELDS = {"timepoint", "label", "age_years", "lesion_voxels"}
_FLOAT_FIELDS = {"lesion_volume_mm3", "lesion_volume_true_mm3"}


@dataclass(frozen=True)
class Cohort:
    """A generated cohort: its folder and the rows of ``cohort.csv``.

    Attributes
    ----------
    root
        The cohort folder.
    rows
        One :class:`CohortRow` per study, patients in order, baseline before follow-up.
    """

    root: Path
    rows: tuple[CohortRow, ...]

    @property
    def csv_path(self) -> Path:
        """``root / "cohort.csv"``."""
        return self.root / _CSV_NAME

    @property
    def ground_truth_path(self) -> Path:
        """``root / "ground_truth.json"``."""
        return self.root / _TRUTH_NAME

    @property
    def patient_ids(self) -> list[str]:
        """Patient IDs in cohort order, each once."""
        return list(dict.fromkeys(row.patient_id for row in self.rows))

    def ct_dir(self, row: CohortRow) -> Path:
        """Absolute path of the row's DICOM series folder."""
        return self.root / row.ct_dir

    def mask_path(self, row: CohortRow) -> Path:
        """Absolute path of the row's lesion mask (NIfTI, uint8, on the CT grid)."""
        return self.root / row.mask_path

    def ground_truth(self) -> dict[str, Any]:
        """The parsed ``ground_truth.json``."""
        return json.loads(self.ground_truth_path.read_text(encoding="utf-8"))

    def __len__(self) -> int:
        return len(self.rows)


# ------------------------------------------------------------------------------ planning
@dataclass(frozen=True)
class _Grid:
    shape: tuple[int, int, int]  # (z, y, x)
    spacing: np.ndarray  # (x, y, z) mm
    origin: np.ndarray  # (x, y, z) mm, centre of voxel (0, 0, 0)
    offsets: np.ndarray  # (3, N) index * spacing, shared by grids of the same shape and spacing

    @staticmethod
    def make_offsets(shape: tuple[int, int, int], spacing: np.ndarray) -> np.ndarray:
        nz, ny, nx = shape
        out = np.empty((3, nz, ny, nx))
        out[0] = spacing[0] * np.arange(nx)[np.newaxis, np.newaxis, :]
        out[1] = spacing[1] * np.arange(ny)[np.newaxis, :, np.newaxis]
        out[2] = spacing[2] * np.arange(nz)[:, np.newaxis, np.newaxis]
        return out.reshape(3, -1)

    @property
    def centre(self) -> np.ndarray:
        extent = (np.asarray(self.shape[::-1]) - 1) * self.spacing
        return self.origin + extent / 2.0

    def points(self) -> np.ndarray:
        """Voxel centres, (3, N) LPS mm, voxels in C order of the (z, y, x) array."""
        return self.offsets + self.origin[:, np.newaxis]

    def border_clearance(self, points: np.ndarray) -> np.ndarray:
        """Distance (mm) from each point (3, N) to the nearest face of the voxel-centre box."""
        lo = self.origin[:, np.newaxis]
        hi = lo + ((np.asarray(self.shape[::-1]) - 1) * self.spacing)[:, np.newaxis]
        return np.minimum(points - lo, hi - points).min(axis=0)


def _in_ellipsoid(q: np.ndarray, shape: Ellipsoid) -> np.ndarray:
    """Axis-aligned ellipsoid test on (3, N) points (fast path of Ellipsoid.contains)."""
    c, r = shape.centre_mm, shape.radii_mm
    return ((q[0] - c[0]) / r[0]) ** 2 + ((q[1] - c[1]) / r[1]) ** 2 + ((q[2] - c[2]) / r[2]) ** 2 <= 1.0


@dataclass(frozen=True)
class _Anatomy:
    centre: np.ndarray  # body axis point (x, y, z) mm
    a_mm: float  # body semi-axis along x (left-right)
    b_mm: float  # body semi-axis along y (anterior-posterior)
    fat_mm: float
    z_mod: tuple[float, float, float]  # relative amplitude, wavelength mm, phase
    lungs: tuple[Ellipsoid, ...]
    spine: Ellipsoid | None
    tissue_field: RandomField
    tissue_hu: float  # amplitude of the smooth soft-tissue variation (HU, std)
    lung_field: RandomField

    def render(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HU at anatomy points ``q`` (3, N) and which of them are soft tissue (lesion-eligible)."""
        amp, wavelength, phase = self.z_mod
        dx, dy, dz = q[0] - self.centre[0], q[1] - self.centre[1], q[2] - self.centre[2]
        scale = 1.0 + amp * np.sin(2.0 * np.pi * dz / wavelength + phase)
        a, b = self.a_mm * scale, self.b_mm * scale
        body = (dx / a) ** 2 + (dy / b) ** 2 <= 1.0
        tissue = (dx / (a - self.fat_mm)) ** 2 + (dy / (b - self.fat_mm)) ** 2 <= 1.0
        hu = np.where(body, _FAT_HU, _AIR_HU)
        for lung in self.lungs:
            inside = _in_ellipsoid(q, lung) & tissue
            rel = (q[:, inside] - self.centre[:, np.newaxis]).T
            hu[inside] = _LUNG_HU + 25.0 * self.lung_field(rel)
            tissue &= ~inside
        if self.spine is not None:
            inside = _in_ellipsoid(q, self.spine) & tissue
            hu[inside] = _BONE_HU
            tissue &= ~inside
        rel = (q[:, tissue] - self.centre[:, np.newaxis]).T
        hu[tissue] = _TISSUE_HU + self.tissue_hu * self.tissue_field(rel)
        return hu, tissue


@dataclass(frozen=True)
class _Study:
    label: str
    date: dt.date
    time: str
    accession: str
    study_id: str
    transform: np.ndarray  # 4x4, baseline LPS mm -> this study's LPS mm
    growth: float  # lesion volume factor relative to baseline
    rotation_deg: float
    translation_mm: np.ndarray
    noise_seed: int


@dataclass(frozen=True)
class _Patient:
    index: int
    patient_id: str
    name: str
    sex: str
    birth_date: dt.date
    label: int
    site: int
    referring: str
    grid: _Grid
    anatomy: _Anatomy
    lesion: Ellipsoid | LobulatedShape
    lesion_hu: float
    texture_hu: float
    texture: RandomField
    studies: tuple[_Study, ...]


def _age(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _rigid(theta_deg: float, translation: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """4x4 LPS transform: rotation by ``theta_deg`` about the z axis through ``centre``, then
    translation: p' = R (p - c) + c + t."""
    th = np.deg2rad(theta_deg)
    rot = np.array([[np.cos(th), -np.sin(th), 0.0], [np.sin(th), np.cos(th), 0.0], [0.0, 0.0, 1.0]])
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = translation + centre - rot @ centre
    return out


def _shape_extent_mm(shape: Ellipsoid | LobulatedShape) -> float:
    """Largest surface radius (mm), measured on the sphere quadrature (+1 %) for lobulated ones."""
    if isinstance(shape, Ellipsoid):
        return shape.max_radius_mm
    from medimg.datasets.phantoms import _fibonacci_sphere

    return float(np.max(shape.radius_at(_fibonacci_sphere(4096)))) * 1.01


def _plan_patient(
    rng: np.random.Generator,
    *,
    index: int,
    patient_id: str,
    label: int,
    followup: bool,
    shape: tuple[int, int, int],
    spacing: np.ndarray,
    offsets: np.ndarray,
    max_rotation_deg: float,
    max_translation_mm: float,
    spine: bool,
) -> _Patient:
    """Draw every random quantity of one patient (the only place where randomness is used)."""
    from scipy.ndimage import distance_transform_edt

    # ---- demographics
    sex = "F" if rng.random() < 0.5 else "M"
    name = f"{_FAMILY[rng.integers(len(_FAMILY))]}^{_GIVEN[sex][rng.integers(len(_GIVEN[sex]))]}"
    site = int(rng.integers(len(_SITES)))
    referring = _PHYSICIANS[rng.integers(len(_PHYSICIANS))]
    base_date = dt.date(2016, 1, 1) + dt.timedelta(days=int(rng.integers(0, 7 * 365)))
    birth_date = base_date - dt.timedelta(days=int(rng.integers(35 * 365, 86 * 365)))
    dates = [base_date]
    if followup:
        dates.append(base_date + dt.timedelta(days=int(rng.integers(60, 541))))

    # ---- grid: centred in x/y, table position varies per patient
    nz, ny, nx = shape
    table_z = float(np.round(rng.uniform(-250.0, -100.0), 1))
    origin = -(np.asarray([nx, ny, nz]) - 1) * spacing / 2.0 + np.array([0.0, 0.0, table_z])
    grid = _Grid(shape, spacing, origin, offsets)
    centre = grid.centre
    half = np.asarray([nx, ny, nz]) * spacing / 2.0

    # ---- anatomy
    a = half[0] * rng.uniform(0.80, 0.88)
    b = half[1] * rng.uniform(0.68, 0.78)
    body_centre = centre + np.array([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0), 0.0])
    fat = rng.uniform(2.5, 5.0)
    lung_z = half[2] * rng.uniform(1.3, 2.0)
    lungs = tuple(
        Ellipsoid(
            body_centre
            + np.array([side * a * rng.uniform(0.56, 0.62), b * rng.uniform(0.25, 0.35), rng.uniform(-5, 5)]),
            np.array([a * rng.uniform(0.18, 0.24), b * rng.uniform(0.26, 0.34), lung_z]),
        )
        for side in (1.0, -1.0)
    )
    spine_shape = None
    if spine:
        spine_shape = Ellipsoid(
            body_centre + np.array([0.0, b * 0.72, 0.0]),
            np.array([b * 0.14, b * 0.12, 10.0 * half[2]]),
        )
    anatomy = _Anatomy(
        centre=body_centre,
        a_mm=float(a),
        b_mm=float(b),
        fat_mm=float(fat),
        z_mod=(float(rng.uniform(0.0, 0.04)), float(rng.uniform(80.0, 160.0)), float(rng.uniform(0, 2 * np.pi))),
        lungs=lungs,
        spine=spine_shape,
        tissue_field=RandomField.random(rng, wavelength_mm=(25.0, 70.0), n_waves=6),
        tissue_hu=float(rng.uniform(3.0, 6.0)),
        lung_field=RandomField.random(rng, wavelength_mm=(6.0, 20.0), n_waves=8),
    )

    # ---- follow-up motion and growth (drawn before the lesion so placement can respect them)
    growth = 1.0
    theta, trans = 0.0, np.zeros(3)
    if followup:
        growth = float(rng.uniform(1.2, 2.0) if label == 1 else rng.uniform(1.0, 1.1))
        theta = float(rng.uniform(-max_rotation_deg, max_rotation_deg))
        trans = rng.uniform(-max_translation_mm, max_translation_mm, 3)
    transform = _rigid(theta, trans, centre)

    # ---- lesion shape (centre placed below), intensity and texture
    diameter = rng.uniform(8.0, 20.0)
    if label == 1:
        lesion: Ellipsoid | LobulatedShape = LobulatedShape.random(
            rng, np.zeros(3), diameter / 2.0, amplitude=float(rng.uniform(0.08, 0.30)),
            n_terms=int(rng.integers(3, 6)), degrees=(2, 6),
        )
        lesion_hu = float(rng.uniform(95.0, 120.0))
        texture_hu = float(rng.uniform(6.0, 22.0))
        texture = RandomField.random(rng, wavelength_mm=(3.0, 8.0), n_waves=48)
    else:
        elong = rng.uniform(0.85, 1.15, 3)
        lesion = Ellipsoid(np.zeros(3), diameter / 2.0 * elong / np.cbrt(np.prod(elong)), random_rotation(rng))
        lesion_hu = float(rng.uniform(85.0, 105.0))
        texture_hu = float(rng.uniform(2.0, 9.0))
        texture = RandomField.random(rng, wavelength_mm=(5.0, 12.0), n_waves=48)

    # clearance (mm) of each voxel centre from non-tissue, and from the field of view
    pts = grid.points()
    _, tissue = anatomy.render(pts)
    tissue = tissue.reshape(shape)
    clearance = distance_transform_edt(tissue, sampling=tuple(spacing[::-1])).ravel()
    candidates = np.flatnonzero(clearance >= 1.0)
    pts = pts[:, candidates]
    clearance = clearance[candidates]
    view_bl = grid.border_clearance(pts)
    view_fu = grid.border_clearance(transform[:3, :3] @ pts + transform[:3, 3:])
    jitter = 0.5 * float(np.linalg.norm(spacing))
    extent = _shape_extent_mm(lesion)
    grow = growth ** (1.0 / 3.0)
    for _ in range(40):
        need = extent * grow + _MARGIN_MM + jitter
        ok = (clearance >= need) & (view_bl >= extent + jitter + _MARGIN_MM) & (view_fu >= need)
        if ok.any():
            break
        lesion = lesion.scaled(0.93)
        extent *= 0.93
    else:
        msg = (
            f"the field of view {tuple(np.round(2 * half, 1))} mm (x, y, z) is too small to hold a "
            "lesion: use a larger shape_zyx or spacing_mm"
        )
        raise ParameterError(msg)
    if extent < 1.5:
        msg = (
            f"the field of view {tuple(np.round(2 * half, 1))} mm (x, y, z) only holds lesions of "
            f"radius {extent:.2g} mm: use a larger shape_zyx or spacing_mm"
        )
        raise ParameterError(msg)
    pick = int(rng.choice(np.flatnonzero(ok)))
    lesion_centre = pts[:, pick] + rng.uniform(-0.5, 0.5, 3) * spacing
    if isinstance(lesion, Ellipsoid):
        lesion = Ellipsoid(lesion_centre, lesion.radii_mm, lesion.rotation)
    else:
        lesion = LobulatedShape(lesion_centre, lesion.radius_mm, lesion.axes, lesion.degrees, lesion.amplitudes)

    studies = []
    for t, date in enumerate(dates):
        studies.append(
            _Study(
                label=_STUDY_LABELS[t],
                date=date,
                time=f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}",
                accession=f"{int(rng.integers(10**9, 10**10))}",
                study_id=f"{int(rng.integers(1000, 100000))}",
                transform=np.eye(4) if t == 0 else transform,
                growth=1.0 if t == 0 else growth,
                rotation_deg=0.0 if t == 0 else theta,
                translation_mm=np.zeros(3) if t == 0 else trans,
                noise_seed=int(rng.integers(2**63)),
            )
        )
    return _Patient(
        index=index,
        patient_id=patient_id,
        name=name,
        sex=sex,
        birth_date=birth_date,
        label=label,
        site=site,
        referring=referring,
        grid=grid,
        anatomy=anatomy,
        lesion=lesion,
        lesion_hu=lesion_hu,
        texture_hu=texture_hu,
        texture=texture,
        studies=tuple(studies),
    )


# ------------------------------------------------------------------------------ rendering
def _render(patient: _Patient, study: _Study, *, noise_hu: float) -> tuple[np.ndarray, np.ndarray]:
    """The study's CT volume (int16 HU, (z, y, x)) and lesion mask (uint8), deterministically."""
    from scipy.ndimage import gaussian_filter

    grid = patient.grid
    scanner = SCANNERS[_SITES[patient.site][1]]
    q = grid.points()
    if not np.array_equal(study.transform, np.eye(4)):
        inv = np.linalg.inv(study.transform)
        q = inv[:3, :3] @ q + inv[:3, 3:]  # anatomy (baseline) position of each voxel
    hu, _ = patient.anatomy.render(q)

    lesion = patient.lesion.scaled(study.growth ** (1.0 / 3.0))
    centre = lesion.centre_mm
    reach = lesion.max_radius_mm
    near = np.flatnonzero(np.all(np.abs(q - centre[:, np.newaxis]) <= reach, axis=0))
    inside = near[lesion.contains(q[:, near].T)]
    rel = q[:, inside].T - centre  # the texture is fixed to the anatomy (it does not grow)
    hu[inside] = patient.lesion_hu + patient.texture_hu * patient.texture(rel)
    mask = np.zeros(q.shape[1], dtype=np.uint8)
    mask[inside] = 1

    sigma = (0.0, scanner.blur_mm / grid.spacing[1], scanner.blur_mm / grid.spacing[0])
    image = gaussian_filter(hu.reshape(grid.shape), sigma=sigma, mode="nearest")
    if noise_hu > 0:
        rng = np.random.default_rng(study.noise_seed)
        noise = gaussian_filter(rng.standard_normal(grid.shape), sigma=sigma, mode="wrap")
        noise *= noise_hu * scanner.noise_factor / noise.std()
        image += noise
    image = np.clip(np.round(image), -1024, 3071).astype(np.int16)
    return image, mask.reshape(grid.shape)


# ------------------------------------------------------------------------------ public API
def make_cohort(
    out_dir: str | Path,
    *,
    n_patients: int = 20,
    seed: int = 0,
    shape_zyx: Sequence[int] = (24, 96, 96),
    spacing_mm: Sequence[float] = (0.8, 0.8, 2.5),
    noise_hu: float = 12.0,
    followup_fraction: float = 0.3,
    malignant_fraction: float = 0.5,
    max_rotation_deg: float = 5.0,
    max_translation_mm: float = 5.0,
    spine: bool = False,
    transfer_syntax: str = "explicit",
    progress: Callable[[int, int], None] | None = None,
) -> Cohort:
    """Generate a seeded synthetic CT cohort as DICOM series, lesion masks and ground truth.

    Each patient has a body (soft tissue ~40 HU with smooth variation, a fat layer of
    -100 HU, air -1000 HU outside), two lungs (-850 HU), optionally a spine (700 HU), and one
    lesion of 8-20 mm diameter in soft tissue, clear of lungs, bone and fat. Benign lesions are
    homogeneous ellipsoids (85-105 HU, texture 2-9 HU); malignant ones are lobulated (rotated
    spherical-harmonic radius perturbation) and heterogeneous (95-120 HU, correlated texture of
    6-22 HU). The distributions overlap: the label is learnable from first-order, texture and
    shape features but not perfectly. Each site's scanner blurs in-plane and adds
    kernel-correlated Gaussian noise (see :data:`SCANNERS`); values are rounded to integer HU and
    clipped to [-1024, 3071].

    A ``followup_fraction`` of the patients get a second study, 60-540 days later, of the same
    anatomy under a rigid transform (rotation about the z axis through the volume centre, then
    a translation) with the lesion scaled about its centre so that its volume grows by the
    recorded factor (malignant 1.2-2.0, benign 1.0-1.1).

    Parameters
    ----------
    out_dir
        Folder to create (must not exist or be empty). It is built under a temporary name and
        renamed at the end, so an interrupted run leaves nothing behind.
    n_patients
        Number of patients (>= 1).
    seed
        Seeds everything: pixels, demographics, UIDs. Same seed and parameters -> same files.
    shape_zyx
        Volume shape (z, y, x) in voxels.
    spacing_mm
        Voxel size (x, y, z) in mm.
    noise_hu
        Noise standard deviation in HU for the noisier scanner (the other has 0.7x).
    followup_fraction, malignant_fraction
        Fractions of patients with a follow-up study and with a malignant lesion (rounded to
        whole patients, randomly assigned).
    max_rotation_deg, max_translation_mm
        Bounds of the follow-up motion: rotation uniform in +/- degrees about z, translation
        uniform in +/- mm along each of x, y, z.
    spine
        Add a vertebral column (700 HU). Off by default because bone defeats the simple
        "HU > 70, largest connected component" lesion segmentation.
    transfer_syntax
        Transfer syntax of the DICOM files (see :func:`medimg.io.dicom.writer.write_series`).
    progress
        Called as ``progress(done, total)`` after each patient.

    Returns
    -------
    Cohort
        The folder and the table of studies.

    Notes
    -----
    Layout::

        out_dir/cohort.csv                      one row per study (see CohortRow)
        out_dir/ground_truth.json               parameters, seed, per-study truth
        out_dir/<patient_id>/<study_label>/ct/0001.dcm ...   one CT series
        out_dir/<patient_id>/<study_label>/lesion_mask.nii.gz  uint8 mask on the CT grid

    In ``ground_truth.json``, ``transform_from_baseline`` of a study is the 4x4 LPS matrix
    ``T`` that maps a point of the patient's anatomy at baseline (baseline LPS mm) to the same
    anatomical point in that study (its LPS mm): ``p_study = T @ p_baseline``. For registering
    the follow-up (fixed) to the baseline (moving), the ITK-style transform (fixed -> moving
    points) is ``inv(T)``. Baseline and follow-up share the same voxel grid but not the same
    Frame of Reference UID.
    """
    from medimg import __version__
    from medimg.io import write as write_image
    from medimg.io.dicom.writer import DEFAULT_UID_ROOT, write_series

    out_dir = Path(out_dir)
    shape = tuple(int(s) for s in shape_zyx)
    spacing = np.asarray(spacing_mm, dtype=float).ravel()
    if n_patients < 1:
        raise ParameterError(f"n_patients must be >= 1, got {n_patients}")
    if len(shape) != 3 or min(shape) < 4:
        raise ParameterError(f"shape_zyx must be 3 integers >= 4 (z, y, x), got {tuple(shape_zyx)}")
    if spacing.size != 3 or not np.all(spacing > 0):
        raise ParameterError(f"spacing_mm must be 3 positive values (x, y, z) in mm, got {spacing_mm!r}")
    for name, value in (("followup_fraction", followup_fraction), ("malignant_fraction", malignant_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ParameterError(f"{name} must be in [0, 1], got {value}")
    if noise_hu < 0 or max_rotation_deg < 0 or max_translation_mm < 0:
        raise ParameterError("noise_hu, max_rotation_deg and max_translation_mm must be >= 0")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ParameterError(f"{out_dir}: the cohort folder must not exist or be empty")

    root = np.random.SeedSequence(seed)
    cohort_rng = np.random.default_rng(root.spawn(1)[0])
    n_malignant = int(round(malignant_fraction * n_patients))
    n_followup = int(round(followup_fraction * n_patients))
    labels = cohort_rng.permutation(np.arange(n_patients) < n_malignant).astype(int)
    followups = cohort_rng.permutation(np.arange(n_patients) < n_followup)
    mrns = cohort_rng.choice(90_000_000, size=n_patients, replace=False) + 10_000_000
    patient_seeds = root.spawn(n_patients)
    offsets = _Grid.make_offsets(shape, spacing)  # type: ignore[arg-type]

    rows: list[CohortRow] = []
    truth_patients: dict[str, Any] = {}
    with atomic_dir(out_dir) as tmp:
        for i in range(n_patients):
            pid = str(int(mrns[i]))
            patient = _plan_patient(
                np.random.default_rng(patient_seeds[i]),
                index=i,
                patient_id=pid,
                label=int(labels[i]),
                followup=bool(followups[i]),
                shape=shape,  # type: ignore[arg-type]
                spacing=spacing,
                offsets=offsets,
                max_rotation_deg=max_rotation_deg,
                max_translation_mm=max_translation_mm,
                spine=spine,
            )
            institution, scanner_index, station, serial = _SITES[patient.site]
            scanner = SCANNERS[scanner_index]
            voxel_mm3 = float(np.prod(spacing))
            truth_studies = []
            for t, study in enumerate(patient.studies):
                image, mask = _render(patient, study, noise_hu=noise_hu)
                study_dir = tmp / pid / study.label
                entropy = f"medimg.datasets.cohort/{seed}/{pid}/{study.label}"
                study_uid = str(_uid(DEFAULT_UID_ROOT, entropy, "study"))
                series_uid = str(_uid(DEFAULT_UID_ROOT, entropy, "series"))
                ct_image = Image.from_geometry(image, spacing=spacing, origin=patient.grid.origin)
                write_series(
                    ct_image,
                    study_dir / "ct",
                    modality="CT",
                    patient={
                        "PatientName": patient.name,
                        "PatientID": pid,
                        "PatientBirthDate": patient.birth_date.strftime("%Y%m%d"),
                        "PatientSex": patient.sex,
                        "PatientAge": f"{_age(patient.birth_date, study.date):03d}Y",
                    },
                    study={
                        "StudyInstanceUID": study_uid,
                        "StudyDate": study.date.strftime("%Y%m%d"),
                        "StudyTime": study.time,
                        "StudyID": study.study_id,
                        "AccessionNumber": study.accession,
                        "ReferringPhysicianName": patient.referring,
                        "StudyDescription": "CT CHEST WITHOUT CONTRAST",
                    },
                    series={
                        "SeriesInstanceUID": series_uid,
                        "FrameOfReferenceUID": str(_uid(DEFAULT_UID_ROOT, entropy, "frame")),
                        "SeriesNumber": 2,
                        "SeriesDescription": f"AXIAL {spacing[2]:g}MM {scanner.kernel}",
                        "SeriesDate": study.date.strftime("%Y%m%d"),
                        "SeriesTime": study.time,
                        "BodyPartExamined": "CHEST",
                        "Manufacturer": scanner.manufacturer,
                        "ManufacturerModelName": scanner.model,
                        "InstitutionName": institution,
                        "StationName": station,
                        "DeviceSerialNumber": serial,
                        "ConvolutionKernel": scanner.kernel,
                        "KVP": "120",
                    },
                    extra={
                        "AcquisitionDate": study.date.strftime("%Y%m%d"),
                        "ContentDate": study.date.strftime("%Y%m%d"),
                        "AcquisitionTime": study.time,
                        "ContentTime": study.time,
                        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
                    },
                    rescale_slope=1.0,
                    rescale_intercept=-1024.0,
                    transfer_syntax=transfer_syntax,  # type: ignore[arg-type]
                    seed=entropy,
                )
                mask_image = Image.from_geometry(mask, spacing=spacing, origin=patient.grid.origin)
                write_image(mask_image, study_dir / "lesion_mask.nii.gz")
                voxels = int(mask.sum())
                true_volume = patient.lesion.volume_mm3 * study.growth
                rel = f"{pid}/{study.label}"
                rows.append(
                    CohortRow(
                        patient_id=pid,
                        study_label=study.label,
                        timepoint=t,
                        label=patient.label,
                        manufacturer=scanner.manufacturer,
                        scanner_model=scanner.model,
                        institution=institution,
                        sex=patient.sex,
                        age_years=_age(patient.birth_date, study.date),
                        study_date=study.date.strftime("%Y%m%d"),
                        lesion_voxels=voxels,
                        lesion_volume_mm3=voxels * voxel_mm3,
                        lesion_volume_true_mm3=true_volume,
                        ct_dir=f"{rel}/ct",
                        mask_path=f"{rel}/lesion_mask.nii.gz",
                        study_uid=study_uid,
                        series_uid=series_uid,
                    )
                )
                centre = study.transform[:3, :3] @ patient.lesion.centre_mm + study.transform[:3, 3]
                truth_studies.append(
                    {
                        "study_label": study.label,
                        "timepoint": t,
                        "study_date": study.date.strftime("%Y%m%d"),
                        "transform_from_baseline": study.transform.tolist(),
                        "rotation_deg_about_z": study.rotation_deg,
                        "translation_mm": [float(v) for v in study.translation_mm],
                        "centre_of_rotation_mm": [float(v) for v in patient.grid.centre],
                        "growth_factor": study.growth,
                        "lesion_centre_mm": [float(v) for v in centre],
                        "lesion_voxels": voxels,
                        "lesion_volume_mm3": voxels * voxel_mm3,
                        "lesion_volume_true_mm3": true_volume,
                        "noise_hu": noise_hu * scanner.noise_factor,
                    }
                )
            truth_patients[pid] = {
                "index": i,
                "label": patient.label,
                "lesion_type": "lobulated" if patient.label == 1 else "ellipsoid",
                "lesion_mean_hu": patient.lesion_hu,
                "lesion_texture_hu": patient.texture_hu,
                "lesion_radius_mm": float(
                    patient.lesion.radius_mm
                    if isinstance(patient.lesion, LobulatedShape)
                    else np.cbrt(np.prod(patient.lesion.radii_mm))
                ),
                "manufacturer": scanner.manufacturer,
                "scanner_model": scanner.model,
                "blur_mm": scanner.blur_mm,
                "institution": institution,
                "origin_mm": [float(v) for v in patient.grid.origin],
                "studies": truth_studies,
            }
            if progress is not None:
                progress(i + 1, n_patients)

        _write_csv(tmp / _CSV_NAME, rows)
        truth = {
            "generator": "medimg.datasets.make_cohort",
            "medimg_version": __version__,
            "seed": seed,
            "parameters": {
                "n_patients": n_patients,
                "shape_zyx": list(shape),
                "spacing_mm": [float(v) for v in spacing],
                "noise_hu": noise_hu,
                "followup_fraction": followup_fraction,
                "malignant_fraction": malignant_fraction,
                "max_rotation_deg": max_rotation_deg,
                "max_translation_mm": max_translation_mm,
                "spine": spine,
                "transfer_syntax": transfer_syntax,
            },
            "scanners": [asdict(s) for s in SCANNERS],
            "conventions": {
                "coordinates": "LPS millimetres (DICOM patient space); arrays (z, y, x); spacing (x, y, z)",
                "transform_from_baseline": (
                    "4x4 matrix T with p_study = T @ p_baseline (homogeneous LPS mm): maps a "
                    "baseline physical point to the same anatomical point in the study"
                ),
                "lesion_volume_mm3": "mask voxel count x voxel volume",
                "lesion_volume_true_mm3": "volume of the continuous lesion shape",
                "growth_factor": "lesion volume in this study / baseline volume (continuous shape)",
            },
            "patients": truth_patients,
        }
        with atomic_path(tmp / _TRUTH_NAME) as path:
            path.write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return Cohort(out_dir, tuple(rows))


def load_cohort(out_dir: str | Path) -> Cohort:
    """Read a cohort written by :func:`make_cohort` back from its ``cohort.csv``.

    Parameters
    ----------
    out_dir
        The cohort folder.

    Raises
    ------
    FileFormatError
        ``cohort.csv`` is missing or lacks columns.
    """
    root = Path(out_dir)
    path = root / _CSV_NAME
    if not path.is_file():
        raise FileFormatError(path, "no cohort.csv here; is this a folder made by make_cohort?")
    names = [f.name for f in fields(CohortRow)]
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(names) - set(reader.fieldnames or ())
        if missing:
            raise FileFormatError(path, f"missing columns {sorted(missing)}")
        for record in reader:
            values: dict[str, Any] = {}
            for name in names:
                raw = record[name]
                values[name] = int(raw) if name in _INT_FIELDS else float(raw) if name in _FLOAT_FIELDS else raw
            rows.append(CohortRow(**values))
    return Cohort(root, tuple(rows))


def _write_csv(path: Path, rows: Sequence[CohortRow]) -> None:
    names = [f.name for f in fields(CohortRow)]
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        for row in rows:
            record = asdict(row)
            for name in _FLOAT_FIELDS:
                record[name] = repr(float(record[name]))
            writer.writerow(record)


def _uid(root: str, *parts: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(prefix=root, entropy_srcs=list(parts)))
