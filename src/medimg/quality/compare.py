"""Choosing a denoising filter: run several on one noisy image and score them against the clean one.

The workflow of the field: take a clean image (or a noisy/clean pair), add a known noise,
run the candidate filters — each with its defaults, or over the small parameter grid declared
next to it (``search=True``, the candidate with the best PSNR is kept) — and compare PSNR,
SSIM, CNR and run time. :func:`medimg.pipeline.denoise_compare.write_comparison` writes the table, a side-by-side figure and
the best method per metric.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.filters._common import check_scalar

__all__ = ["Candidate", "DenoiseResult", "Comparison", "compare_denoisers", "comparison_table",
           "default_methods", "candidates_for", "METRICS"]

#: Scores in the table and whether larger is better.
METRICS: dict[str, bool] = {"psnr_db": True, "ssim": True, "cnr": True, "time_s": False}


@dataclass(frozen=True)
class Candidate:
    """One filter with one set of parameters."""

    method: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        """``"nlm(h=12.3)"``: the method with its parameters, numbers to 4 significant digits."""
        parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params.items()]
        return f"{self.method}({', '.join(parts)})" if parts else self.method


@dataclass
class DenoiseResult:
    """Scores of one candidate; ``image`` is the filtered image (not serialised)."""

    candidate: Candidate
    psnr_db: float
    ssim: float
    cnr: float
    time_s: float
    image: Image | None = None

    def row(self) -> dict[str, Any]:
        """A flat, JSON-friendly dict."""
        return {"method": self.candidate.method, "params": dict(self.candidate.params),
                "psnr_db": self.psnr_db, "ssim": self.ssim, "cnr": self.cnr, "time_s": self.time_s}


@dataclass
class Comparison:
    """The outcome of :func:`compare_denoisers`.

    Attributes
    ----------
    results
        The kept candidate of each method, in the order asked.
    tried
        Every candidate run (more than ``results`` with a parameter search).
    noisy
        Scores of the noisy image itself (time 0), the baseline.
    best
        For each metric of :data:`METRICS`, the method that scores best.
    data_range
        The data range (image units) used by PSNR and SSIM.
    settings
        Noise, seed, search flag, estimated noise sigma and the CNR regions used.
    """

    results: list[DenoiseResult]
    tried: list[DenoiseResult]
    noisy: DenoiseResult
    best: dict[str, str]
    data_range: float
    settings: dict[str, Any]
    clean: Image
    noisy_image: Image


def default_methods() -> list[str]:
    """The noise-reduction filters that run without a required parameter (sorted)."""
    from medimg.filters import denoising_methods

    out = []
    for name in denoising_methods():
        params = registry("filters").get(name).params.model_fields
        if not any(info.is_required() for info in params.values()):
            out.append(name)
    return out


def candidates_for(method: str, noisy: Image, sigma: float, *, search: bool,
                   fixed: Mapping[str, Any] | None = None) -> list[Candidate]:
    """The candidates of ``method``: its grid (``search``), else its defaults (or the grid's middle
    when the filter has required parameters). ``fixed`` parameters override every candidate."""
    entry = registry("filters").get(method)
    fixed = dict(fixed or {})
    builder: Callable[[Image, float], list[dict[str, Any]]] | None = getattr(entry.func, "search_space", None)
    grid = builder(noisy, sigma) if builder is not None else []
    required = [n for n, info in entry.params.model_fields.items() if info.is_required()]
    if search and grid:
        cands = [{**g, **fixed} for g in grid]
    elif required and not all(r in fixed for r in required):
        if not grid:
            msg = f"{method} needs {', '.join(required)}; give them with --param {method}.{required[0]}=VALUE"
            raise ParameterError(msg)
        cands = [{**grid[len(grid) // 2], **fixed}]
    else:
        cands = [fixed]
    unique: list[dict[str, Any]] = []
    for c in cands:
        entry.validate(c)
        if c not in unique:
            unique.append(c)
    return [Candidate(method, c) for c in unique]


def _default_rois(clean: Image) -> tuple[Image, Image, str]:
    """Bright and dark classes of an Otsu split of the clean image, each eroded by one voxel."""
    from scipy import ndimage as ndi

    from medimg.quality.noise import _otsu

    x = np.asarray(clean.array, np.float64)
    t = _otsu(x.ravel())
    bright = ndi.binary_erosion(x > t)
    dark = ndi.binary_erosion(x <= t)
    if bright.sum() < 2 or dark.sum() < 2:
        bright, dark = x > t, x <= t
    return (clean.with_array(bright.astype(np.uint8), meta={}),
            clean.with_array(dark.astype(np.uint8), meta={}), f"otsu split of the clean image at {t:.6g}")


def compare_denoisers(
    clean: Image,
    noisy: Image,
    methods: Sequence[str] | None = None,
    *,
    search: bool = False,
    data_range: float | str = "reference",
    mask: Image | None = None,
    rois: Image | None = None,
    fixed: Mapping[str, Mapping[str, Any]] | None = None,
    keep_images: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
) -> Comparison:
    """Run denoising filters on ``noisy`` and score each against ``clean``.

    Parameters
    ----------
    clean
        The noise-free reference.
    noisy
        The image to denoise, on ``clean``'s grid (e.g. from :func:`~medimg.quality.add_noise`).
    methods
        Registered noise-reduction filters; ``None``: :func:`default_methods`.
    search
        Try each filter's declared parameter grid and keep the candidate with the best PSNR.
    data_range
        Data range for PSNR and SSIM (image units), or ``"reference"``: the clean image's
        max - min (inside ``mask``).
    mask
        Optional region on the grid where PSNR and SSIM are computed.
    rois
        Label map on the grid whose labels 1 and 2 are the two regions of the CNR; ``None``:
        the bright and dark classes of an Otsu split of the clean image, eroded by one voxel.
    fixed
        Parameters fixed per method, ``{"nlm": {"h": 30.0}}``; they override the grid.
    keep_images
        Keep the filtered image of each kept candidate (for the figure).
    progress
        Called as ``progress(done, total, label)`` after each candidate.

    Returns
    -------
    Comparison
    """
    from medimg.filters import apply, denoising_methods
    from medimg.quality.metrics import cnr, psnr, resolve_data_range, ssim
    from medimg.quality.noise import estimate_noise_sigma

    check_scalar(clean, "clean")
    check_scalar(noisy, "noisy")
    clean.check_same_grid(noisy, names=("clean", "noisy"))
    methods = list(methods) if methods else default_methods()
    allowed = set(denoising_methods())
    fixed = {k: dict(v) for k, v in (fixed or {}).items()}
    for name in [*methods, *fixed]:
        registry("filters").get(name)  # unknown names: UnknownNameError with a suggestion
        if name not in allowed:
            raise ParameterError(f"{name!r} is not a noise-reduction filter; choose among {', '.join(sorted(allowed))}")
    unused = set(fixed) - set(methods)
    if unused:
        raise ParameterError(f"--param given for {', '.join(sorted(unused))}, which is not among the methods compared")
    rng = resolve_data_range(clean, data_range, mask)
    if rois is None:
        roi_a, roi_b, roi_note = _default_rois(clean)
    else:
        check_scalar(rois, "rois")
        clean.check_same_grid(rois, names=("clean", "rois"))
        labels = np.asarray(rois.array)
        if not ((labels == 1).any() and (labels == 2).any()):
            raise ParameterError("rois must hold label 1 (region A) and label 2 (region B) for the CNR")
        roi_a = rois.with_array((labels == 1).astype(np.uint8), meta={})
        roi_b = rois.with_array((labels == 2).astype(np.uint8), meta={})
        roi_note = "labels 1 and 2 of the given ROI map"
    sigma = estimate_noise_sigma(noisy)
    plan = [(m, candidates_for(m, noisy, sigma, search=search, fixed=fixed.get(m))) for m in methods]
    total = sum(len(c) for _m, c in plan)

    def score(image: Image, candidate: Candidate, seconds: float) -> DenoiseResult:
        return DenoiseResult(
            candidate=candidate,
            psnr_db=psnr(clean, image, data_range=rng, mask=mask),
            ssim=ssim(clean, image, data_range=rng, mask=mask),
            cnr=cnr(image, roi_a, roi_b),
            time_s=seconds,
        )

    baseline = score(noisy, Candidate("noisy"), 0.0)
    tried: list[DenoiseResult] = []
    kept: list[DenoiseResult] = []
    done = 0
    for method, cands in plan:
        best: DenoiseResult | None = None
        for cand in cands:
            t0 = time.perf_counter()
            out = apply(noisy, method, **cand.params)
            seconds = time.perf_counter() - t0
            res = score(out, cand, seconds)
            tried.append(res)
            if best is None or res.psnr_db > best.psnr_db:
                best = res
                best.image = out if keep_images else None
            done += 1
            if progress is not None:
                progress(done, total, cand.label())
        assert best is not None
        for res in tried:
            if res is not best and res.candidate.method == method:
                res.image = None
        kept.append(best)
    winners = {}
    for metric, larger in METRICS.items():
        pick = (max if larger else min)(kept, key=lambda r, m=metric: getattr(r, m))
        winners[metric] = pick.candidate.method
    added = noisy.meta.get("noise")
    noise_text = f"{added['kind']}:{added['level']:g}" if isinstance(added, dict) else "given"
    settings = {"noise": noise_text, "search": bool(search), "sigma_estimate": sigma,
                "cnr_regions": roi_note, "mask": mask is not None, "methods": methods}
    return Comparison(results=kept, tried=tried, noisy=baseline, best=winners, data_range=rng,
                      settings=settings, clean=clean, noisy_image=noisy)


def _fmt(value: float, digits: int) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def comparison_table(result: Comparison) -> list[dict[str, Any]]:
    """Rows of the main table: the noisy baseline, then each method's kept candidate."""
    rows = [{**result.noisy.row(), "method": "noisy (no filter)"}]
    rows.extend(r.row() for r in result.results)
    return rows


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
