"""Reports: one self-contained HTML file with tables, plots and image overlays.

Build :class:`Section` objects (headings, paragraphs, :class:`Table` s, :class:`Figure` s made
from PNG bytes such as :func:`overlay_png` and :func:`roc_png` return) and pass them to
:func:`write_report`. Jinja2 and matplotlib are imported only when a report or figure is made.
"""

from __future__ import annotations

from medimg.report.html import Figure, Section, Table, overlay_png, roc_png, write_report

__all__ = ["Section", "Table", "Figure", "write_report", "overlay_png", "roc_png"]
