"""Sensitivity analysis: rerun a result under each way of handling missing values and tabulate.

A study's claim should not hinge on one imputation choice. :func:`imputation_sensitivity` calls
the user's analysis once per method with an unfitted imputer (which the analysis fits inside its
folds) and, optionally, once on the complete cases only, then tabulates the numbers side by side
with their spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from medimg.errors import ParameterError
from medimg.missing.tabular import IMPUTERS, make_imputer

__all__ = ["imputation_sensitivity"]


def _as_row(result: Any) -> dict[str, Any]:
    if isinstance(result, Mapping):
        row: dict[str, Any] = {}
        for k, v in result.items():
            if hasattr(v, "value") and hasattr(v, "ci"):  # MetricCI
                row[str(k)] = float(v.value)
                row[f"{k}_ci_low"], row[f"{k}_ci_high"] = (float(c) for c in v.ci)
            else:
                row[str(k)] = v
        return row
    if isinstance(result, (int, float, np.floating, np.integer)):
        return {"result": float(result)}
    raise ParameterError(
        f"the analysis must return a number or a mapping name -> number (or MetricCI), got {type(result).__name__}"
    )


def imputation_sensitivity(
    analysis: Callable[..., Any],
    methods: Sequence[str] = IMPUTERS,
    *,
    complete_case: Callable[[], Any] | None = None,
    imputer_params: Mapping[str, Any] | None = None,
) -> Any:
    """Run ``analysis(imputer)`` for each imputation method; return a table (pandas DataFrame).

    Parameters
    ----------
    analysis
        Called as ``analysis(imputer)`` with an unfitted scikit-learn imputer (fit it inside the
        folds, e.g. as the first step of a ``Pipeline``); returns a number or a mapping of
        names to numbers or :class:`~medimg.evaluation.classification.MetricCI` (expanded to
        value, ``_ci_low``, ``_ci_high`` columns).
    methods
        Names for :func:`~medimg.missing.tabular.make_imputer`.
    complete_case
        Optional zero-argument callable giving the same result on the rows without missing
        values (the "complete-case analysis" row).
    imputer_params
        Keyword arguments for :func:`make_imputer` (e.g. ``{"seed": 1}``).

    Returns
    -------
    pandas.DataFrame
        One row per method (column ``method``) plus, for each numeric result, the rows
        ``"range"`` (max - min over the methods) at the end.
    """
    import pandas as pd

    if not methods:
        raise ParameterError("give at least one imputation method")
    rows = []
    for m in methods:
        imputer = make_imputer(m, **dict(imputer_params or {}))  # type: ignore[arg-type]
        rows.append({"method": m, **_as_row(analysis(imputer))})
    if complete_case is not None:
        rows.append({"method": "complete-case", **_as_row(complete_case())})
    table = pd.DataFrame(rows)
    spread: dict[str, Any] = {"method": "range"}
    for col in table.columns[1:]:
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        spread[col] = float(finite.max() - finite.min()) if finite.size else math.nan
    return pd.concat([table, pd.DataFrame([spread])], ignore_index=True)
