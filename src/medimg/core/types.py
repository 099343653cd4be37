"""Constrained parameter types for registered operations.

A registered operation's keyword parameters become a pydantic model (:mod:`medimg.core.registry`),
so a constraint written in the signature is checked before any work starts — by the CLI's
``--param`` parsing and by a study's validation (``steps[2].params.sigma_mm: Input should be
greater than 0``). The operation still checks its arguments itself, for direct Python calls.
"""

from __future__ import annotations

from typing import Annotated

import annotated_types

__all__ = ["Positive", "NonNegative", "PositiveInt"]

#: A number > 0 (a length in mm, a standard deviation, a cut-off frequency).
Positive = Annotated[float, annotated_types.Gt(0)]
#: A number >= 0 (a radius that may be 0, a volume threshold).
NonNegative = Annotated[float, annotated_types.Ge(0)]
#: An integer >= 1 (a count of iterations).
PositiveInt = Annotated[int, annotated_types.Ge(1)]
