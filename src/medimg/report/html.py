"""A self-contained HTML report: headings, paragraphs, tables and embedded PNG figures.

:func:`write_report` renders ``templates/report.html`` with Jinja2 (autoescaping on, so text from
file names or DICOM tags cannot inject markup) into one file that needs nothing else: styles are
inline and images are base64 ``data:`` URIs. The file is written atomically.

:func:`overlay_png` and :func:`roc_png` draw the usual figures with matplotlib's Agg renderer
(through ``matplotlib.figure.Figure``, never ``pyplot``, so no global state is touched).
matplotlib and Jinja2 are imported inside the functions.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.files import atomic_path
from medimg.core.image import Image
from medimg.core.optional import require
from medimg.errors import ParameterError

__all__ = ["Table", "Figure", "Section", "write_report", "overlay_png", "roc_png", "format_value"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- content model
def format_value(value: Any, float_format: str = ".4g") -> str:
    """Text of a table cell: floats with ``float_format``, NaN as ``"n/a"``, others with ``str``."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return "n/a" if np.isnan(value) else format(float(value), float_format)
    if isinstance(value, np.generic):
        return str(value.item())
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Table:
    """A table: a header row and data rows (cells are formatted with :func:`format_value`).

    Use :meth:`from_records` for a list of dicts.
    """

    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""
    float_format: str = ".4g"

    def __post_init__(self) -> None:
        width = len(self.header)
        for i, row in enumerate(self.rows):
            if len(row) != width:
                msg = f"table row {i} has {len(row)} cells but the header has {width}"
                raise ParameterError(msg)

    @classmethod
    def from_records(
        cls, records: Sequence[Mapping[str, Any]], *, caption: str = "", float_format: str = ".4g"
    ) -> Table:
        """A table from dicts: columns in first-seen key order, missing cells empty."""
        plain = [{str(k): v for k, v in rec.items()} for rec in records]
        header: list[str] = []
        for rec in plain:
            header.extend(k for k in rec if k not in header)
        rows = [[rec.get(h) for h in header] for rec in plain]
        return cls(header, rows, caption=caption, float_format=float_format)

    def cells(self) -> list[list[str]]:
        """The rows as formatted text."""
        return [[format_value(v, self.float_format) for v in row] for row in self.rows]


@dataclass(frozen=True)
class Figure:
    """A PNG image with a caption; embedded in the report as a ``data:`` URI."""

    png: bytes
    caption: str = ""
    alt: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.png, (bytes, bytearray)) or not bytes(self.png).startswith(
            _PNG_SIGNATURE
        ):
            raise ParameterError(
                "Figure.png must be the bytes of a PNG file (e.g. from overlay_png)"
            )

    def data_uri(self) -> str:
        """``data:image/png;base64,...``."""
        return "data:image/png;base64," + base64.b64encode(bytes(self.png)).decode("ascii")


@dataclass(frozen=True)
class Section:
    """A report section: a heading, paragraphs (plain text, escaped), tables and figures.

    ``tables`` accepts :class:`Table` objects or lists of dicts (converted with
    :meth:`Table.from_records`); ``figures`` accepts :class:`Figure` objects or raw PNG bytes.
    After construction both hold :class:`Table` / :class:`Figure` objects only.
    """

    heading: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[Table | Sequence[Mapping[str, Any]]] = ()
    figures: Sequence[Figure | bytes] = ()
    preformatted: Sequence[str] = ()  # blocks shown as written (YAML, logs), after the tables

    def __post_init__(self) -> None:
        paragraphs = (
            (self.paragraphs,) if isinstance(self.paragraphs, str) else tuple(self.paragraphs)
        )
        tables = tuple(t if isinstance(t, Table) else Table.from_records(t) for t in self.tables)
        figures = tuple(f if isinstance(f, Figure) else Figure(bytes(f)) for f in self.figures)
        object.__setattr__(self, "paragraphs", paragraphs)
        object.__setattr__(self, "tables", tables)
        object.__setattr__(self, "figures", figures)
        object.__setattr__(self, "preformatted", (self.preformatted,) if isinstance(self.preformatted, str)
                           else tuple(self.preformatted))


# ---------------------------------------------------------------------- writing
def write_report(
    path: str | Path,
    *,
    title: str,
    sections: Sequence[Section],
    subtitle: str = "",
    footer: str | None = None,
) -> Path:
    """Write a self-contained HTML report (one file, no external resources), atomically.

    Parameters
    ----------
    path
        Output file (``.html``); its folder is created. An existing file is replaced only once
        the new one is complete.
    title
        Page title and top heading.
    sections
        The body, in order.
    subtitle
        Optional line under the title.
    footer
        Footer text; by default ``"Generated by medimg <version> on <UTC time>"``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    jinja2 = require("jinja2", extra="report")

    from medimg import __version__

    for i, sec in enumerate(sections):
        if not isinstance(sec, Section):
            raise ParameterError(f"sections[{i}] must be a Section, got {type(sec).__name__}")
    if footer is None:
        now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        footer = f"Generated by medimg {__version__} on {now}"
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("medimg.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template("report.html").render(
        title=title,
        subtitle=subtitle,
        footer=footer,
        sections=[
            {
                "heading": s.heading,
                "anchor": f"section-{i + 1}",
                "paragraphs": list(s.paragraphs),
                "tables": [
                    {"header": [str(h) for h in t.header], "rows": t.cells(), "caption": t.caption}
                    for t in s.tables
                ],
                "figures": [
                    {"src": f.data_uri(), "caption": f.caption, "alt": f.alt or f.caption}
                    for f in s.figures
                ],
                "preformatted": list(s.preformatted),
            }
            for i, s in enumerate(sections)
        ],
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return path


# ---------------------------------------------------------------------- figures
def _png_bytes(fig: Any, *, dpi: float) -> bytes:
    buf = io.BytesIO()
    # No "Software" text chunk (it holds the matplotlib version): same drawing, same bytes.
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def overlay_png(
    image: Image,
    mask: Image,
    *,
    slice_index: int | None = None,
    window: tuple[float, float] | None = (-160.0, 240.0),
    label: int | None = None,
    color: str = "#ff2d2d",
    linewidth: float = 1.5,
    title: str | None = None,
    width_in: float = 5.0,
    dpi: float = 100.0,
) -> bytes:
    """PNG of an axial slice in grey with the mask's outline drawn on it.

    Parameters
    ----------
    image
        Scalar 3-D (or 2-D) intensity image.
    mask
        Label map on the same grid.
    slice_index
        Axial slice to show: index along array axis 0 (z). By default the slice with the most
        mask voxels (the first such slice on a tie; the middle slice when the mask is empty).
        Ignored for 2-D images.
    window
        Display range as ``(lower, upper)`` intensities in image units: values at or below
        ``lower`` are black, at or above ``upper`` white. The default (-160, 240) HU is a
        soft-tissue window (level 40, width 400). ``None`` uses the slice's 1st-99th percentile.
    label
        Outline only ``mask == label``; ``None`` outlines every non-zero voxel.
    color
        Outline colour (any matplotlib colour).
    linewidth
        Outline width in points.
    title
        Optional title above the image.
    width_in, dpi
        Figure width in inches and resolution; the height follows the slice's physical aspect.

    Returns
    -------
    bytes
        The PNG file. Pixels are drawn in millimetres (extent from the x and y spacing), so
        anisotropic pixels are shown with their true aspect ratio.

    Raises
    ------
    GeometryMismatchError
        ``mask`` is not on ``image``'s grid.
    ParameterError
        A multi-channel image, ``slice_index`` out of range, or ``window`` with lower >= upper.
    """
    figure_cls = require("matplotlib.figure", extra="report").Figure

    for name, img in (("image", image), ("mask", mask)):
        if not isinstance(img, Image) or img.channel_axis is not None:
            raise ParameterError(f"overlay_png: {name} must be a scalar medimg.Image")
    image.check_same_grid(mask, names=("image", "mask"))
    region = mask.array != 0 if label is None else mask.array == label
    if image.spatial_ndim == 3:
        n_slices = image.spatial_shape[0]
        if slice_index is None:
            area = region.reshape(n_slices, -1).sum(axis=1)
            slice_index = int(np.argmax(area)) if area.any() else n_slices // 2
        if int(slice_index) != slice_index or not 0 <= slice_index < n_slices:
            msg = (
                f"overlay_png: slice_index must be an integer in [0, {n_slices - 1}] "
                f"(axial slices, array axis 0), got {slice_index!r}"
            )
            raise ParameterError(msg)
        plane = image.array[int(slice_index)].astype(np.float64)
        outline = region[int(slice_index)]
    else:
        plane = image.array.astype(np.float64)
        outline = region
    if window is None:
        finite = plane[np.isfinite(plane)]
        lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
    else:
        lo, hi = (float(v) for v in window)
        if not hi > lo:
            raise ParameterError(
                f"overlay_png: window must be (lower, upper) with lower < upper, got {window}"
            )

    sx, sy = image.spacing[0], image.spacing[1]
    ny, nx = plane.shape
    # Pixel centres at i * spacing (mm); the extent covers the pixels' edges.
    extent = (-0.5 * sx, (nx - 0.5) * sx, (ny - 0.5) * sy, -0.5 * sy)
    fig = figure_cls(figsize=(width_in, width_in * (ny * sy) / (nx * sx)))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(
        plane, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest", aspect="equal"
    )
    if outline.any() and not outline.all():
        xs = np.arange(nx) * sx
        ys = np.arange(ny) * sy
        ax.contour(
            xs, ys, outline.astype(np.float32), levels=[0.5], colors=[color], linewidths=linewidth
        )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_axis_off()
    if title:
        ax.text(
            0.01,
            0.99,
            title,
            transform=ax.transAxes,
            va="top",
            ha="left",
            color="white",
            fontsize=9,
            bbox={"facecolor": "black", "alpha": 0.5, "linewidth": 0},
        )
    return _png_bytes(fig, dpi=dpi)


def roc_png(
    fpr: Sequence[float] | np.ndarray,
    tpr: Sequence[float] | np.ndarray,
    auc: float,
    ci: tuple[float, float] | None = None,
    *,
    confidence: float = 0.95,
    title: str = "ROC curve (out-of-fold)",
    size_in: float = 4.5,
    dpi: float = 100.0,
) -> bytes:
    """PNG of a ROC curve with its AUC (and confidence interval) in the legend.

    Parameters
    ----------
    fpr, tpr
        False- and true-positive rates of the curve's points, in [0, 1], same length.
    auc
        Area under the curve shown in the legend.
    ci
        Optional (low, high) confidence interval of ``auc`` (e.g. ``CVResult.ci``).
    confidence
        Level of ``ci``, for the legend.
    title
        Plot title.
    size_in, dpi
        Square figure size in inches and resolution.

    Returns
    -------
    bytes
        The PNG file.
    """
    figure_cls = require("matplotlib.figure", extra="report").Figure

    fpr_a = np.asarray(fpr, dtype=np.float64)
    tpr_a = np.asarray(tpr, dtype=np.float64)
    if fpr_a.ndim != 1 or fpr_a.shape != tpr_a.shape or fpr_a.size < 2:
        raise ParameterError(
            f"roc_png: fpr and tpr must be 1-D of equal length >= 2, "
            f"got {fpr_a.shape} and {tpr_a.shape}"
        )
    label = f"AUC {auc:.3f}"
    if ci is not None and all(np.isfinite(ci)):
        label += f" ({confidence:.0%} CI {ci[0]:.3f}-{ci[1]:.3f})"
    fig = figure_cls(figsize=(size_in, size_in))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    ax.plot(fpr_a, tpr_a, color="#1f5fbf", linewidth=2, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("False-positive rate (1 - specificity)")
    ax.set_ylabel("True-positive rate (sensitivity)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _png_bytes(fig, dpi=dpi)
