"""Constrained parameter types for registered operations.

A registered operation's keyword parameters become a pydantic model (:mod:`medimg.core.registry`),
so a constraint written in the signature is checked before any work starts — by the CLI's
``--param`` parsing and by a study's validation (``steps[2].params.sigma_mm: Input should be
greater than 0``). The operation still checks its arguments itself, for direct Python calls.
"""

from __future__ import annotations

from typing import Annotated

import annotated_types

__all__ = ["Positive", "NonNegative", "PositiveInt", "InputFile", "is_input_file"]

#: A number > 0 (a length in mm, a standard deviation, a cut-off frequency).
Positive = Annotated[float, annotated_types.Gt(0)]
#: A number >= 0 (a radius that may be 0, a volume threshold).
NonNegative = Annotated[float, annotated_types.Ge(0)]
#: An integer >= 1 (a count of iterations).
PositiveInt = Annotated[int, annotated_types.Ge(1)]


class _InputFileMarker:
    """Marks a parameter that names an input file (a model checkpoint, a key): a study resolves a
    relative path against the study's folder and checks that the file exists before any work."""

    def __repr__(self) -> str:
        return "InputFile"


#: A path of an existing input file (a trained model, a parameter file).
InputFile = Annotated[str, _InputFileMarker()]


def is_input_file(field: object) -> bool:
    """Whether a parameter (a pydantic field, or an annotation) is an :data:`InputFile`."""
    import typing

    metadata = list(getattr(field, "metadata", ())) + list(getattr(field, "__metadata__", ()))
    if any(isinstance(m, _InputFileMarker) for m in metadata):
        return True
    return any(is_input_file(a) for a in typing.get_args(getattr(field, "annotation", field)))
