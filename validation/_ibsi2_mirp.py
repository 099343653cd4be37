"""MIRP (the IBSI chapter 2 reference implementation used to make the reference response maps)
as a reference for medimg's filters: the MIRP settings of each medimg filter configuration, and
MIRP response maps of the IBSI digital phantoms, cached in ``.bench/ibsi2_mirp``.

MIRP's own test suite checks its maps against the IBSI reference response maps (absolute
tolerance 0.001); the maps themselves are not in the reference data here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench" / "ibsi2_mirp"
_BC = {"zero": "constant", "nearest": "nearest", "periodic": "wrap", "mirror": "reflect"}
_POOL = {"average": "mean", "max": "max"}


def mirp_available() -> bool:
    try:
        import mirp  # noqa: F401
    except ImportError:
        return False
    return True


def mirp_settings(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """MIRP keyword settings equivalent to medimg filter ``name`` with parameters ``p``."""
    bc = _BC[p.get("boundary", "mirror")]
    by_slice = p.get("dims", 3) == 2
    if name == "mean":
        s = {"filter_kernels": "mean", "mean_filter_kernel_size": p["support"], "mean_filter_boundary_condition": bc}
    elif name == "log":
        s = {"filter_kernels": "laplacian_of_gaussian", "laplacian_of_gaussian_sigma": p["sigma_mm"],
             "laplacian_of_gaussian_kernel_truncate": p.get("truncate", 4.0),
             "laplacian_of_gaussian_boundary_condition": bc}
    elif name == "laws":
        s = {"filter_kernels": "laws", "laws_kernel": p["kernel"], "laws_compute_energy": p.get("energy", True),
             "laws_rotation_invariance": p.get("rotation_invariant", True),
             "laws_pooling_method": _POOL[p.get("pooling", "max")], "laws_delta": p.get("energy_distance", 7),
             "laws_boundary_condition": bc}
    elif name == "gabor":
        inv = p.get("rotation_invariant", False)
        s = {"filter_kernels": "gabor", "gabor_sigma": p["sigma_mm"], "gabor_gamma": p.get("gamma", 1.0),
             "gabor_lambda": p["wavelength_mm"], "gabor_theta": p.get("theta_deg", 0.0),
             "gabor_response": "modulus", "gabor_rotation_invariance": inv,
             "gabor_pooling_method": _POOL[p.get("pooling", "average")], "gabor_boundary_condition": bc}
        if inv:
            s["gabor_theta_step"] = p.get("theta_step_deg", 45.0)
        by_slice = p.get("planes", "axial") == "axial" and inv
    elif name == "wavelet":
        s = {"filter_kernels": "separable_wavelet", "separable_wavelet_families": p["wavelet"],
             "separable_wavelet_set": p["response"], "separable_wavelet_decomposition_level": p.get("level", 1),
             "separable_wavelet_rotation_invariance": p.get("rotation_invariant", False),
             "separable_wavelet_pooling_method": _POOL[p.get("pooling", "average")],
             "separable_wavelet_boundary_condition": bc}
    elif name == "simoncelli":
        s = {"filter_kernels": "nonseparable_wavelet", "nonseparable_wavelet_families": "simoncelli",
             "nonseparable_wavelet_decomposition_level": p.get("level", 1),
             "nonseparable_wavelet_boundary_condition": bc}
    else:
        raise ValueError(f"no MIRP equivalent of {name}")
    s["by_slice"] = by_slice
    return s


def mirp_response(image_path: Path, mask_path: Path, name: str, params: dict[str, Any]) -> tuple[np.ndarray, float]:
    """MIRP's response map (z, y, x) of ``image_path`` and the seconds MIRP took."""
    from mirp import extract_images

    logging.getLogger("mirp").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    out = extract_images(image=str(image_path), mask=str(mask_path), image_export_format="numpy",
                         export_images=True, write_images=False, response_map_feature_families="none",
                         **mirp_settings(name, params))
    seconds = time.perf_counter() - t0
    images, _masks = out[0]
    return np.asarray(images[1], dtype=np.float64), seconds


def cached_phase1(config_id: str, image_path: Path, mask_path: Path, name: str,
                  params: dict[str, Any]) -> np.ndarray:
    """MIRP's map of a phase 1 configuration, computed once and cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{config_id}.npy"
    if path.exists():
        return np.load(path)
    ref, _ = mirp_response(image_path, mask_path, name, params)
    np.save(path, ref.astype(np.float32))
    return ref.astype(np.float32)
