r"""Body-size estimates for SUV normalisation: lean body mass, body surface area, ideal weight.

With :math:`W` the weight in kg, :math:`H` the height (cm unless stated) and
:math:`\mathrm{BMI} = W / H_\mathrm{m}^2`:

* lean body mass, James (1976), as used by PERCIST 1.0 (Wahl et al. 2009):
  men :math:`1.10\,W - 128\,(W/H)^2`, women :math:`1.07\,W - 148\,(W/H)^2`;
* lean body mass, Janmahasatian et al. (Clin Pharmacokinet 2005; 44:1051), recommended for
  SUL by Tahari et al. (J Nucl Med 2014; 55:1481) because James's formula falls for obese
  patients: men :math:`9270\,W / (6680 + 216\,\mathrm{BMI})`, women
  :math:`9270\,W / (8780 + 244\,\mathrm{BMI})`;
* body surface area, Du Bois and Du Bois (1916): :math:`0.007184\,W^{0.425} H^{0.725}` m²;
* ideal body weight as used for SUVibw (Sugawara et al., Radiology 1999; 213:521):
  men :math:`48.0 + 1.06\,(H - 152)`, women :math:`45.5 + 0.91\,(H - 152)` kg.

Sex is ``"M"`` or ``"F"`` (DICOM Patient's Sex (0010,0040)); any other value is an error, since
each formula exists per sex only. Results in kg (m² for the surface area).
"""

from __future__ import annotations

from typing import Literal

from medimg.errors import ParameterError

__all__ = ["lean_body_mass_james", "lean_body_mass_janmahasatian", "body_surface_area",
           "ideal_body_weight", "check_sex"]


def check_sex(sex: str | None, *, source: str = "sex") -> Literal["M", "F"]:
    """``"M"`` or ``"F"`` from ``sex`` (case-insensitive); otherwise :class:`ParameterError`."""
    value = str(sex or "").strip().upper()
    if value not in ("M", "F"):
        msg = (f"{source} is {sex!r}; the body-size formula needs M or F (Patient's Sex (0010,0040)); "
               "give --sex M or --sex F")
        raise ParameterError(msg)
    return value  # type: ignore[return-value]


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not value > 0 or value != value:
        raise ParameterError(f"{name} must be > 0, got {value!r}")
    return value


def lean_body_mass_james(weight_kg: float, height_m: float, sex: str) -> float:
    """Lean body mass (kg) by James's formula (module notes); raises when it is not positive."""
    w, h_cm, s = _positive(weight_kg, "weight_kg"), _positive(height_m, "height_m") * 100.0, check_sex(sex)
    lbm = 1.10 * w - 128.0 * (w / h_cm) ** 2 if s == "M" else 1.07 * w - 148.0 * (w / h_cm) ** 2
    if lbm <= 0:
        msg = (f"James's lean body mass is {lbm:.3g} kg for {w:g} kg and {h_cm:g} cm (the formula fails "
               "for high BMI); use the Janmahasatian formula (suv_type='lbm-janma')")
        raise ParameterError(msg)
    return lbm


def lean_body_mass_janmahasatian(weight_kg: float, height_m: float, sex: str) -> float:
    """Lean body mass (kg) by Janmahasatian et al. (module notes)."""
    w, h, s = _positive(weight_kg, "weight_kg"), _positive(height_m, "height_m"), check_sex(sex)
    bmi = w / (h * h)
    return 9270.0 * w / (6680.0 + 216.0 * bmi) if s == "M" else 9270.0 * w / (8780.0 + 244.0 * bmi)


def body_surface_area(weight_kg: float, height_m: float) -> float:
    """Body surface area (m²) by Du Bois and Du Bois (module notes)."""
    w, h_cm = _positive(weight_kg, "weight_kg"), _positive(height_m, "height_m") * 100.0
    return 0.007184 * w**0.425 * h_cm**0.725


def ideal_body_weight(height_m: float, sex: str) -> float:
    """Ideal body weight (kg) for SUVibw (module notes); raises when it is not positive."""
    h_cm, s = _positive(height_m, "height_m") * 100.0, check_sex(sex)
    ibw = 48.0 + 1.06 * (h_cm - 152.0) if s == "M" else 45.5 + 0.91 * (h_cm - 152.0)
    if ibw <= 0:
        raise ParameterError(f"ideal body weight is {ibw:.3g} kg for {h_cm:g} cm; check the height")
    return ibw
