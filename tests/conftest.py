"""Shared fixtures: synthetic volumes with known geometry, and the path to shipped test data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """A proper rotation matrix from angles in degrees about x, then y, then z."""
    a, b, c = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


#: Direction matrices (columns = x, y, z voxel axes in LPS) of the common acquisitions.
DIRECTIONS = {
    "axial": np.eye(3),
    # slices stored head to feet: rows flipped too so that the axes stay right-handed
    "axial_feet_first": np.column_stack([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]]),
    "sagittal": np.column_stack([[0.0, 1, 0], [0, 0, -1], [-1, 0, 0]]),  # PIR, as scanners store it
    "coronal": np.column_stack([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),  # LIP
    "oblique": rotation(12.0, -20.0, 31.0),
}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def data_dir() -> Path:
    return DATA


def sphere_phantom(k: int, shape: tuple[int, int, int] = (16, 24, 24), radius2: float = 36.0):
    """A noisy sphere (its contrast varies with ``k``, noise seeded by ``k``) and its uint8 mask, at
    1 x 1 x 2 mm: the cases of the pipeline tests."""
    from medimg import Image

    rng = np.random.default_rng(k)
    z, y, x = np.indices(shape)
    cz, cy, cx = (n / 2 for n in shape)
    sphere = ((z - cz) * 2.0) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 < radius2
    array = (100.0 + (40.0 + 10 * k) * sphere + rng.normal(0, 5, sphere.shape)).astype(np.float32)
    image = Image.from_geometry(array, spacing=(1.0, 1.0, 2.0))
    return image, image.with_array(sphere.astype(np.uint8), meta={})
