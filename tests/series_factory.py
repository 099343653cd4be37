"""A small synthetic DICOM series for the convert tests (written by medimg's own writer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medimg import Image
from medimg.io.dicom.writer import write_series


def write_test_series(root: Path, k: int, shape: tuple[int, int, int]) -> Path:
    """Series ``k`` under ``root / f"s{k}"``: random HU-like values (seeded by ``k``), spacing
    (0.7, 0.8, 2.5) mm, origin z = 4 k mm, files shuffled. Returns its folder."""
    rng = np.random.default_rng(k)
    arr = rng.integers(-1000, 2000, size=shape).astype(np.float32)
    img = Image.from_geometry(arr, spacing=(0.7, 0.8, 2.5), origin=(-30.0, 12.0, 4.0 * k))
    write_series(img, root / f"s{k}", seed=k, shuffle_seed=k)
    return root / f"s{k}"
