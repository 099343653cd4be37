"""The IBSI chapter 2 configurations: phase 1 (response maps of the digital phantoms) and
phase 2 (intensity statistics of filtered response maps of the IBSI CT phantom).

Each phase 1 configuration names its phantom and a registered filter (``feature_filters``)
with its parameters; each phase 2 filter id names the filter applied to the CT phantom in the
2-D setting ``A`` (by slice, no interpolation) or the 3-D setting ``B`` (1 mm isotropic, cubic
spline). Both are taken from the IBSI chapter 2 reference manual (arXiv:2006.05470), tables of
the phase 1 and phase 2 configurations. The presets ``ibsi2-ph1-<id>`` and ``ibsi2-ph2-<id>``
(:data:`medimg.features.config.PRESETS`) are built from these tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Phase1Config", "PHASE1", "PHASE2", "phase2_filter", "image_label"]


@dataclass(frozen=True)
class Phase1Config:
    """One IBSI chapter 2 phase 1 configuration: ``filter`` with ``params`` on ``phantom``."""

    id: str
    phantom: str
    filter: str
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def _p1(id_: str, phantom: str, name: str, note: str = "", **params: Any) -> Phase1Config:
    return Phase1Config(id_, phantom, name, params, note)


_GABOR_A = {"sigma_mm": 10.0, "wavelength_mm": 4.0, "gamma": 0.5}
_GABOR_B = {"sigma_mm": 20.0, "wavelength_mm": 8.0, "gamma": 2.5}

#: Phase 1 configurations by id (lower case, as in the preset names).
PHASE1: dict[str, Phase1Config] = {c.id: c for c in [
    _p1("1a1", "checkerboard", "mean", support=15, dims=3, boundary="zero"),
    _p1("1a2", "checkerboard", "mean", support=15, dims=3, boundary="nearest"),
    _p1("1a3", "checkerboard", "mean", support=15, dims=3, boundary="periodic"),
    _p1("1a4", "checkerboard", "mean", support=15, dims=3, boundary="mirror"),
    _p1("1b1", "impulse", "mean", support=15, dims=2, boundary="zero"),
    _p1("2a", "impulse", "log", sigma_mm=3.0, truncate=4.0, dims=3, boundary="zero"),
    _p1("2b", "checkerboard", "log", sigma_mm=5.0, truncate=4.0, dims=3, boundary="mirror"),
    _p1("2c", "checkerboard", "log", sigma_mm=5.0, truncate=4.0, dims=2, boundary="mirror"),
    _p1("3a1", "impulse", "laws", kernel="E5L5S5", dims=3, rotation_invariant=False, energy=False,
        boundary="zero"),
    _p1("3a2", "impulse", "laws", kernel="E5L5S5", dims=3, rotation_invariant=True, pooling="max",
        energy=False, boundary="zero"),
    _p1("3a3", "impulse", "laws", kernel="E5L5S5", dims=3, rotation_invariant=True, pooling="max",
        energy=True, energy_distance=7, boundary="zero"),
    _p1("3b1", "checkerboard", "laws", kernel="E3W5R5", dims=3, rotation_invariant=False, energy=False,
        boundary="mirror"),
    _p1("3b2", "checkerboard", "laws", kernel="E3W5R5", dims=3, rotation_invariant=True, pooling="max",
        energy=False, boundary="mirror"),
    _p1("3b3", "checkerboard", "laws", kernel="E3W5R5", dims=3, rotation_invariant=True, pooling="max",
        energy=True, energy_distance=7, boundary="mirror"),
    _p1("3c1", "checkerboard", "laws", kernel="L5S5", dims=2, rotation_invariant=False, energy=False,
        boundary="mirror"),
    _p1("3c2", "checkerboard", "laws", kernel="L5S5", dims=2, rotation_invariant=True, pooling="max",
        energy=False, boundary="mirror"),
    _p1("3c3", "checkerboard", "laws", kernel="L5S5", dims=2, rotation_invariant=True, pooling="max",
        energy=True, energy_distance=7, boundary="mirror"),
    _p1("4a1", "impulse", "gabor", **_GABOR_A, theta_deg=60.0, boundary="zero"),
    _p1("4a2", "impulse", "gabor", **_GABOR_A, rotation_invariant=True, theta_step_deg=45.0,
        pooling="average", planes="orthogonal", boundary="zero"),
    _p1("4b1", "sphere", "gabor", **_GABOR_B, theta_deg=225.0, boundary="mirror"),
    _p1("4b2", "sphere", "gabor", **_GABOR_B, rotation_invariant=True, theta_step_deg=22.5,
        pooling="average", planes="orthogonal", boundary="mirror"),
    _p1("5a1", "impulse", "wavelet", wavelet="db2", response="LHL", level=1, rotation_invariant=False,
        boundary="zero"),
    _p1("5a2", "impulse", "wavelet", wavelet="db2", response="LHL", level=1, rotation_invariant=True,
        pooling="average", boundary="zero"),
    _p1("6a1", "sphere", "wavelet", wavelet="coif1", response="HHL", level=1, rotation_invariant=False,
        boundary="periodic"),
    _p1("6a2", "sphere", "wavelet", wavelet="coif1", response="HHL", level=1, rotation_invariant=True,
        pooling="average", boundary="periodic"),
    _p1("7a1", "checkerboard", "wavelet", wavelet="haar", response="LLL", level=2, rotation_invariant=True,
        pooling="average", boundary="mirror"),
    _p1("7a2", "checkerboard", "wavelet", wavelet="haar", response="HHH", level=2, rotation_invariant=True,
        pooling="average", boundary="mirror"),
    _p1("8a1", "checkerboard", "simoncelli", level=1, dims=3, boundary="periodic"),
    _p1("8a2", "checkerboard", "simoncelli", level=2, dims=3, boundary="periodic"),
    _p1("8a3", "checkerboard", "simoncelli", level=3, dims=3, boundary="periodic"),
]}

#: Phase 2 filter ids (``"1a"`` ... ``"9b"``) -> (filter name or None for the original image,
#: parameters). ``a``: 2-D (by slice, CT grid); ``b``: 3-D (1 mm isotropic).
PHASE2: dict[str, tuple[str | None, dict[str, Any]]] = {}
for _dim, _d in (("a", 2), ("b", 3)):
    PHASE2["1" + _dim] = (None, {})
    PHASE2["2" + _dim] = ("mean", {"support": 5, "dims": _d, "boundary": "mirror"})
    PHASE2["3" + _dim] = ("log", {"sigma_mm": 1.5, "truncate": 4.0, "dims": _d, "boundary": "mirror"})
    PHASE2["4" + _dim] = ("laws", {"kernel": "L5E5" if _d == 2 else "L5E5E5", "dims": _d,
                                   "rotation_invariant": True, "pooling": "max", "energy": True,
                                   "energy_distance": 7, "boundary": "mirror"})
    PHASE2["5" + _dim] = ("gabor", {"sigma_mm": 5.0, "wavelength_mm": 2.0, "gamma": 1.5,
                                    "rotation_invariant": True, "theta_step_deg": 22.5, "pooling": "average",
                                    "planes": "axial" if _d == 2 else "orthogonal", "boundary": "mirror"})
    PHASE2["6" + _dim] = ("wavelet", {"wavelet": "db3", "response": "LH" if _d == 2 else "LLH", "level": 1,
                                      "dims": _d, "rotation_invariant": True, "pooling": "average",
                                      "boundary": "mirror"})
    PHASE2["7" + _dim] = ("wavelet", {"wavelet": "db3", "response": "HH" if _d == 2 else "HHH", "level": 2,
                                      "dims": _d, "rotation_invariant": True, "pooling": "average",
                                      "boundary": "mirror"})
    PHASE2["8" + _dim] = ("simoncelli", {"level": 1, "dims": _d, "boundary": "periodic"})
    PHASE2["9" + _dim] = ("simoncelli", {"level": 2, "dims": _d, "boundary": "periodic"})
PHASE2 = dict(sorted(PHASE2.items()))


def phase2_filter(filter_id: str) -> tuple[str | None, dict[str, Any]]:
    """The filter (name, params) of phase 2 id ``filter_id`` (``"3a"``, ``"3.A"``)."""
    key = filter_id.replace(".", "").lower()
    if key not in PHASE2:
        from medimg.errors import UnknownNameError

        raise UnknownNameError("IBSI phase 2 filter id", filter_id, PHASE2)
    return PHASE2[key]


def image_label(name: str | None, params: dict[str, Any]) -> str:
    """A short name of the image a filter makes, e.g. ``log-sigma-1.5mm-2d`` (``original`` for
    no filter): the value of the long table's ``image`` column."""
    if name is None:
        return "original"
    d = f"{params.get('dims', 3)}d"
    if name == "mean":
        return f"mean-support-{params.get('support', 3)}-{d}"
    if name == "log":
        return f"log-sigma-{params.get('sigma_mm', 1.0):g}mm-{d}"
    if name == "laws":
        tag = f"laws-{str(params.get('kernel', 'L5E5E5')).lower()}"
        if params.get("energy", True):
            tag += f"-energy-{params.get('energy_distance', 7)}"
        return tag + ("-invariant" if params.get("rotation_invariant", True) else "")
    if name == "gabor":
        tag = f"gabor-sigma-{params.get('sigma_mm', 5.0):g}mm-lambda-{params.get('wavelength_mm', 2.0):g}mm"
        tag += f"-gamma-{params.get('gamma', 1.0):g}"
        tag += "-invariant" if params.get("rotation_invariant") else f"-theta-{params.get('theta_deg', 0.0):g}"
        return tag + ("-3d" if params.get("planes") == "orthogonal" else "-2d")
    if name == "wavelet":
        tag = f"wavelet-{params.get('wavelet', 'haar')}-{str(params.get('response', 'LLH')).lower()}"
        tag += f"-level-{params.get('level', 1)}"
        return tag + ("-invariant" if params.get("rotation_invariant") else "")
    if name == "simoncelli":
        return f"simoncelli-level-{params.get('level', 1)}-{d}"
    if name == "riesz":
        orders = f"{params.get('order_x', 1)}{params.get('order_y', 0)}{params.get('order_z', 0)}"
        base = params.get("base", "none")
        of = {"none": "", "log": f"-log-sigma-{params.get('sigma_mm', 1.0):g}mm",
              "simoncelli": f"-simoncelli-level-{params.get('level', 1)}"}.get(base, f"-{base}")
        return f"riesz-{orders}{of}-{d}"
    return name
