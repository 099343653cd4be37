r"""Frequency-domain filters: ideal, Butterworth and Gaussian low-, high- and band-pass.

The image is multiplied, in the Fourier domain, by a real radial transfer function
:math:`H(D)` of the spatial frequency :math:`D = \sqrt{f_x^2 + f_y^2 + f_z^2}` in **cycles per
mm** (so the same cut-off means the same detail size whatever the voxel spacing; a structure of
size :math:`L` mm is mostly at :math:`1 / (2L)` cycles/mm). With :math:`D_0` the cut-off:

=============  ===================================  =====================================
shape          low-pass :math:`H_{lp}(D)`           high-pass
=============  ===================================  =====================================
``ideal``      :math:`1` if :math:`D \le D_0` else 0  :math:`1 - H_{lp}`
``butterworth`` :math:`1 / (1 + (D/D_0)^{2n})`        :math:`1 - H_{lp}`
``gaussian``   :math:`\exp(-D^2 / 2 D_0^2)`          :math:`1 - H_{lp}`
=============  ===================================  =====================================

The band-pass keeps :math:`[D_{low}, D_{high}]`: :math:`H_{bp} = H_{hp}(D; D_{low})
\cdot H_{lp}(D; D_{high})`. The Nyquist frequency along an axis is :math:`1/(2\,\Delta)`.

The discrete Fourier transform treats the image as periodic; ``padding="reflect"`` (default)
mirrors it along every axis first, which removes the seam at the borders (and the ringing it
causes), at twice the size per axis. ``padding="periodic"`` applies :math:`H` to the image's
own DFT exactly. :func:`spectrum` shows the log-magnitude spectrum as an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.core.types import Positive
from medimg.errors import ParameterError
from medimg.filters._common import (
    check_scalar,
    filter_output,
    float_array,
    min_spacing,
    positive,
    search_space,
)

__all__ = ["lowpass", "highpass", "bandpass", "transfer_function", "spectrum", "frequency_grid"]

_filters = registry("filters")

Shape = Literal["ideal", "butterworth", "gaussian"]
_SHAPES = ("ideal", "butterworth", "gaussian")


def frequency_grid(shape_zyx: Sequence[int], spacing_zyx: Sequence[float], *, real: bool = False) -> np.ndarray:
    """Radial frequency :math:`D` (cycles/mm) of each DFT bin, array order, unshifted.

    With ``real=True`` the last axis holds the ``n // 2 + 1`` bins of a real FFT (``rfftn``).
    """
    from scipy import fft

    axes = []
    for i, (n, d) in enumerate(zip(shape_zyx, spacing_zyx, strict=True)):
        last = i == len(shape_zyx) - 1
        freqs = fft.rfftfreq(int(n), d=float(d)) if (real and last) else fft.fftfreq(int(n), d=float(d))
        axes.append(freqs**2)
    d2 = axes[0]
    for a in axes[1:]:
        d2 = np.add.outer(d2, a)
    return np.sqrt(d2)


def _lowpass_h(d: np.ndarray, cutoff: float, shape: str, order: float) -> np.ndarray:
    if shape == "ideal":
        return (d <= cutoff).astype(np.float64)
    if shape == "butterworth":
        return 1.0 / (1.0 + (d / cutoff) ** (2 * order))
    return np.exp(-(d**2) / (2 * cutoff**2))


def _check_shape(shape: str, order: float) -> None:
    if shape not in _SHAPES:
        from medimg.errors import UnknownNameError

        raise UnknownNameError("frequency filter shape", shape, _SHAPES)
    positive(order, "order", "dimensionless Butterworth order")


def transfer_function(
    d: np.ndarray,
    *,
    band: Literal["lowpass", "highpass", "bandpass"],
    shape: Shape = "butterworth",
    cutoff: float | None = None,
    low_cutoff: float | None = None,
    high_cutoff: float | None = None,
    order: float = 2.0,
) -> np.ndarray:
    """:math:`H(D)` of a low-, high- or band-pass filter at the radial frequencies ``d`` (cycles/mm).

    ``cutoff`` is used by low- and high-pass, ``low_cutoff`` and ``high_cutoff`` by band-pass;
    all in cycles/mm. ``order`` is the Butterworth order *n*. See the module table.
    """
    _check_shape(shape, order)
    d = np.asarray(d, dtype=np.float64)
    if band in ("lowpass", "highpass"):
        if cutoff is None:
            raise ParameterError(f"{band}: give cutoff (cycles/mm)")
        c = positive(cutoff, "cutoff", "cycles/mm")
        low = _lowpass_h(d, c, shape, order)
        return low if band == "lowpass" else 1.0 - low
    if band != "bandpass":
        raise ParameterError(f"band must be 'lowpass', 'highpass' or 'bandpass', got {band!r}")
    if low_cutoff is None or high_cutoff is None:
        raise ParameterError("bandpass: give low_cutoff and high_cutoff (cycles/mm)")
    lo = positive(low_cutoff, "low_cutoff", "cycles/mm")
    hi = positive(high_cutoff, "high_cutoff", "cycles/mm")
    if lo >= hi:
        raise ParameterError(f"bandpass: low_cutoff ({lo:g}) must be below high_cutoff ({hi:g}) cycles/mm")
    return (1.0 - _lowpass_h(d, lo, shape, order)) * _lowpass_h(d, hi, shape, order)


def _apply(image: Image, padding: str, step: dict, **tf: object) -> Image:
    from scipy import fft

    check_scalar(image)
    if padding not in ("reflect", "periodic"):
        raise ParameterError(f"padding must be 'reflect' or 'periodic', got {padding!r}")
    values = float_array(image, np.float64)
    shape = values.shape
    if padding == "reflect":  # mirror each axis: the periodic extension has no seam
        values = np.pad(values, [(0, n) for n in shape], mode="symmetric")
    spacing = np.asarray(image.spacing[: image.spatial_ndim][::-1])
    h = transfer_function(frequency_grid(values.shape, spacing, real=True), **tf)  # type: ignore[arg-type]
    spec = fft.rfftn(values, workers=-1)
    spec *= h
    out = fft.irfftn(spec, s=values.shape, workers=-1)
    out = out[tuple(slice(0, n) for n in shape)]
    step = {**step, "padding": padding}
    return filter_output(image, out.astype(np.float32), step)


@_filters.register("lowpass", tags=("denoiser",))
@search_space(lambda image, sigma: [{"cutoff": f * 0.5 / min_spacing(image), "shape": s}
                                   for f in (0.2, 0.35, 0.5) for s in ("gaussian", "butterworth")])
def lowpass(image: Image, *, cutoff: Positive, shape: Shape = "butterworth", order: float = 2.0,
            padding: Literal["reflect", "periodic"] = "reflect") -> Image:
    """Low-pass filter in the Fourier domain: keep spatial frequencies below ``cutoff``.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    cutoff
        :math:`D_0` in cycles/mm (> 0); details smaller than about ``1 / (2 cutoff)`` mm fade.
    shape
        ``"ideal"`` (sharp cut, rings), ``"butterworth"`` or ``"gaussian"`` (no ringing).
    order
        Butterworth order *n* (> 0); higher is closer to ideal.
    padding
        ``"reflect"`` (mirror the image first; no border seam) or ``"periodic"`` (exact DFT).

    Returns
    -------
    Image
        float32 image on the input's grid.
    """
    tf = {"band": "lowpass", "shape": shape, "cutoff": cutoff, "order": order}
    return _apply(image, padding, {"op": "filters.lowpass", **tf}, **tf)


@_filters.register("highpass", tags=("denoiser",))
def highpass(image: Image, *, cutoff: Positive, shape: Shape = "butterworth", order: float = 2.0,
             padding: Literal["reflect", "periodic"] = "reflect") -> Image:
    """High-pass filter in the Fourier domain: keep spatial frequencies above ``cutoff``.

    :math:`H = 1 - H_{lp}`, so the mean (frequency 0) is removed: the result is centred on 0.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    cutoff
        :math:`D_0` in cycles/mm (> 0).
    shape
        ``"ideal"``, ``"butterworth"`` or ``"gaussian"``.
    order
        Butterworth order *n* (> 0).
    padding
        ``"reflect"`` or ``"periodic"`` (see :func:`lowpass`).

    Returns
    -------
    Image
        float32 image on the input's grid.
    """
    tf = {"band": "highpass", "shape": shape, "cutoff": cutoff, "order": order}
    return _apply(image, padding, {"op": "filters.highpass", **tf}, **tf)


@_filters.register("bandpass", tags=("denoiser",))
def bandpass(image: Image, *, low_cutoff: Positive, high_cutoff: Positive, shape: Shape = "butterworth",
             order: float = 2.0, padding: Literal["reflect", "periodic"] = "reflect") -> Image:
    """Band-pass filter in the Fourier domain: keep frequencies between the two cut-offs.

    :math:`H = H_{hp}(D; D_{low}) \\cdot H_{lp}(D; D_{high})`.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    low_cutoff
        Lower edge :math:`D_{low}` in cycles/mm (> 0).
    high_cutoff
        Upper edge :math:`D_{high}` in cycles/mm (> ``low_cutoff``).
    shape
        ``"ideal"``, ``"butterworth"`` or ``"gaussian"``.
    order
        Butterworth order *n* (> 0).
    padding
        ``"reflect"`` or ``"periodic"`` (see :func:`lowpass`).

    Returns
    -------
    Image
        float32 image on the input's grid.
    """
    tf = {"band": "bandpass", "shape": shape, "low_cutoff": low_cutoff, "high_cutoff": high_cutoff,
          "order": order}
    return _apply(image, padding, {"op": "filters.bandpass", **tf}, **tf)


def spectrum(image: Image, *, log: bool = True) -> Image:
    """The centred magnitude spectrum of ``image`` as an image on the frequency grid.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    log
        Return :math:`\\log(1 + |F|)` (default, what one looks at) instead of :math:`|F|`.

    Returns
    -------
    Image
        float32 image of the same shape whose "spacing" is the frequency step
        ``1 / (n * spacing)`` in cycles/mm and whose origin puts frequency 0 at the centre
        (after ``fftshift``); the direction is the identity. ``meta["units"]`` says so.
    """
    from scipy import fft

    check_scalar(image)
    values = float_array(image, np.float64)
    mag = np.abs(fft.fftshift(fft.fftn(values, workers=-1)))
    if log:
        mag = np.log1p(mag)
    nd = image.spatial_ndim
    n_xyz = np.asarray(image.spatial_shape[::-1], dtype=float)
    sp_xyz = np.asarray(image.spacing[:nd])
    df = 1.0 / (n_xyz * sp_xyz)
    origin = -(n_xyz // 2) * df
    meta = {"units": "log(1+|F|)" if log else "|F|", "axes": "cycles/mm",
            "history": [*image.meta.get("history", []), {"op": "filters.spectrum", "log": log}]}
    return Image.from_geometry(mag.astype(np.float32), spacing=tuple(df), origin=tuple(origin), meta=meta)
