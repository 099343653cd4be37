"""HTML report and figures: content, embedding, escaping, atomic writing, overlay geometry."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest

from medimg import Image
from medimg.errors import GeometryMismatchError, ParameterError
from medimg.report import Figure, Section, Table, overlay_png, roc_png, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image as PILImage

    assert data.startswith(PNG_SIGNATURE)
    with PILImage.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _phantom() -> tuple[Image, Image]:
    """A 6-slice volume, -1000 on the left half and +1000 on the right, with a disk mask
    that is largest on slice 3. Pixels are 0.5 mm wide and 1 mm tall (x, y spacing)."""
    nz, ny, nx = 6, 20, 40
    arr = np.full((nz, ny, nx), -1000.0)
    arr[:, :, nx // 2 :] = 1000.0
    yy, xx = np.mgrid[0:ny, 0:nx]
    mask = np.zeros((nz, ny, nx), dtype=np.uint8)
    for z, radius_mm in enumerate([0, 2, 3, 6, 4, 0]):
        mask[z] = (
            ((xx * 0.5 - 10.0) ** 2 + (yy * 1.0 - 10.0) ** 2) <= radius_mm**2 if radius_mm else 0
        )
    img = Image.from_geometry(arr, spacing=(0.5, 1.0, 3.0))
    return img, img.with_array(mask)


# ---------------------------------------------------------------------- overlay
def test_overlay_defaults_to_largest_slice_and_keeps_physical_aspect():
    img, mask = _phantom()
    png = overlay_png(img, mask)
    assert png == overlay_png(img, mask, slice_index=3)
    assert png != overlay_png(img, mask, slice_index=2)
    rgb = _decode_png(png)
    # 40 x 0.5 mm by 20 x 1 mm is a square: 500 x 500 px at 5 in and 100 dpi.
    assert rgb.shape == (500, 500, 3)


def test_overlay_window_and_outline_colour():
    img, mask = _phantom()
    rgb = _decode_png(overlay_png(img, mask, window=(-160, 240), color="#ff0000"))
    # Far from the outline: -1000 HU is black, +1000 HU is white (lower/upper window).
    assert rgb[250, 20].tolist() == [0, 0, 0]
    assert rgb[250, 480].tolist() == [255, 255, 255]
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    assert red.sum() > 100
    ys, xs = np.nonzero(red)
    # The 6 mm disk centred at (10 mm, 10 mm) holds the voxel centres from 4 to 16 mm; the
    # outline passes half a voxel outside them. The image spans -0.25..19.75 mm in x (0.5 mm
    # pixels) and -0.5..19.5 mm in y (1 mm pixels), drawn on 500 px: 25 px per mm.
    px_x = lambda mm: (mm + 0.25) * 25  # noqa: E731
    px_y = lambda mm: (mm + 0.5) * 25  # noqa: E731
    assert xs.min() == pytest.approx(px_x(3.75), abs=4)
    assert xs.max() == pytest.approx(px_x(16.25), abs=4)
    assert ys.min() == pytest.approx(px_y(3.5), abs=4)
    assert ys.max() == pytest.approx(px_y(16.5), abs=4)
    empty = _decode_png(overlay_png(img, mask, slice_index=0, color="#ff0000"))
    assert not ((empty[..., 0] > 200) & (empty[..., 1] < 80)).any()


def test_overlay_errors():
    img, mask = _phantom()
    with pytest.raises(ParameterError, match="slice_index"):
        overlay_png(img, mask, slice_index=6)
    with pytest.raises(ParameterError, match="lower < upper"):
        overlay_png(img, mask, window=(240, -160))
    other = Image.from_geometry(mask.array, spacing=(1.0, 1.0, 3.0))
    with pytest.raises(GeometryMismatchError):
        overlay_png(img, other)


def test_roc_png_decodes():
    rgb = _decode_png(roc_png([0, 0.1, 0.5, 1], [0, 0.6, 0.9, 1], 0.82, (0.7, 0.9)))
    assert rgb.shape == (450, 450, 3)
    with pytest.raises(ParameterError):
        roc_png([0, 1], [0, 0.5, 1], 0.5)


# ---------------------------------------------------------------------- report
def _sections(png: bytes) -> list[Section]:
    return [
        Section(
            heading="Cohort & data",
            paragraphs=["Synthetic cohort of 40 cases.", "<script>alert('x')</script>"],
            tables=[
                [
                    {"case": "c01", "volume_mm3": 1234.5678, "label": 1},
                    {"case": "c02", "volume_mm3": float("nan"), "label": 0},
                ]
            ],
        ),
        Section(
            heading="Model",
            tables=[Table(["metric", "value"], [["AUC", 0.91234], ["n", 40]], caption="CV result")],
            figures=[Figure(png, caption="ROC <out-of-fold>"), png],
        ),
    ]


def test_report_content_escaped_and_self_contained(tmp_path: Path):
    png = roc_png([0, 0.2, 1], [0, 0.8, 1], 0.9, (0.8, 0.97))
    out = write_report(
        tmp_path / "sub" / "report.html", title="Demo <study>", sections=_sections(png)
    )
    assert out == tmp_path / "sub" / "report.html"
    html = out.read_text(encoding="utf-8")
    for text in (
        "Cohort &amp; data",
        "<h2>Model</h2>",
        "Demo &lt;study&gt;",
        "1235",
        "0.9123",
        "n/a",
        "c02",
        "CV result",
        "ROC &lt;out-of-fold&gt;",
    ):
        assert text in html, text
    assert "<script>" not in html and "&lt;script&gt;" in html
    # No external resources: no links, scripts or remote URLs.
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "<link" not in html
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(uris) == 2
    for uri in uris:
        assert base64.b64decode(uri) == png
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temporary left


def test_report_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "report.html"
    target.write_text("previous report")
    real_write_text = Path.write_text

    def interrupted(self: Path, data: str, *args, **kwargs):
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_report(target, title="t", sections=[Section("h", ["p"])])
    monkeypatch.undo()
    assert target.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_report_input_checks():
    with pytest.raises(ParameterError, match="PNG"):
        Figure(b"GIF89a...")
    with pytest.raises(ParameterError, match="row 0 has 1 cells"):
        Table(["a", "b"], [[1]])
    with pytest.raises(ParameterError, match=r"sections\[0\]"):
        write_report("unused.html", title="t", sections=["not a section"])
