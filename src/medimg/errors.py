"""The medimg exception hierarchy.

Every error that a user can cause (a bad file, an inconsistent series, an unknown method name,
two images on different grids) derives from :class:`UserInputError`. The CLI prints such an
error as one line and exits with status 2; anything else is a bug and shows a traceback.
Messages name the file, tag or parameter, say what was found and what was expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "MedimgError",
    "UserInputError",
    "FileFormatError",
    "NotDicomError",
    "TruncatedFileError",
    "MissingPixelDataError",
    "UnsupportedTransferSyntaxError",
    "UnsupportedFormatError",
    "EmptyInputError",
    "SeriesError",
    "InconsistentSeriesError",
    "MissingSliceError",
    "NonUniformSpacingError",
    "GantryTiltError",
    "MultipleSeriesError",
    "UnsafePathError",
    "GeometryMismatchError",
    "ParameterError",
    "UnknownNameError",
    "MissingDependencyError",
    "DegenerateHullError",
    "did_you_mean",
]


class MedimgError(Exception):
    """Base class of every error raised on purpose by medimg."""


class UserInputError(MedimgError):
    """An error caused by the input (file, parameter, configuration), not by a bug."""


class FileFormatError(UserInputError):
    """A file cannot be read as the format it claims (or seems) to be."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class NotDicomError(FileFormatError):
    """A file is not a DICOM Part 10 file (nor a raw DICOM data set)."""


class TruncatedFileError(FileFormatError):
    """A file ends before the data it announces."""


class MissingPixelDataError(FileFormatError):
    """A DICOM object has no Pixel Data (7FE0,0010), Float or Double Float Pixel Data."""


class UnsupportedTransferSyntaxError(FileFormatError):
    """No installed decoder can decode the file's transfer syntax."""

    def __init__(self, path: str | Path, uid: str, name: str, detail: str = "") -> None:
        self.uid = uid
        self.syntax_name = name
        extra = f" ({detail})" if detail else ""
        super().__init__(
            path, f"cannot decode transfer syntax {name} [{uid}]{extra}"
        )


class UnsupportedFormatError(UserInputError):
    """A path's extension or content is not a format medimg reads or writes."""


class EmptyInputError(UserInputError):
    """A folder holds no readable images."""


class SeriesError(UserInputError):
    """A DICOM series cannot be assembled into a volume with a correct geometry."""


class InconsistentSeriesError(SeriesError):
    """Slices of one series disagree (size, orientation, duplicated positions...)."""


class MissingSliceError(SeriesError):
    """A gap in slice positions shows that slices are missing."""


class NonUniformSpacingError(SeriesError):
    """Slice positions are not equally spaced (and no resampling was asked for)."""


class GantryTiltError(SeriesError):
    """Slices are sheared: the stack direction is not normal to the slices (gantry tilt)."""


class MultipleSeriesError(UserInputError):
    """A path holds several series where one image was expected."""


class UnsafePathError(UserInputError):
    """A path built from a received or header value would leave its output folder (or is not a name)."""


class GeometryMismatchError(UserInputError):
    """Two images that must share a voxel grid do not."""


class ParameterError(UserInputError):
    """A parameter value is invalid."""


class UnknownNameError(ParameterError):
    """A name (method, preset, registry entry) is not known; the message suggests close ones."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        self.kind = kind
        self.name = name
        self.known = known
        super().__init__(f"unknown {kind} {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}")


class MissingDependencyError(MedimgError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


class DegenerateHullError(MedimgError, ValueError):
    """Points span no area (2-D) or volume (3-D), so they have no convex hull (``medimg.core.hull``)."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
