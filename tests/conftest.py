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
