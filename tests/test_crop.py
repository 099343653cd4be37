"""Label bounds in a label array (medimg.core.crop.label_box)."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.errors import ParameterError


@pytest.mark.parametrize("slab_bytes", [1, 200, 1 << 22])
@pytest.mark.parametrize("seed", range(6))
def test_label_box_equals_brute_force(seed: int, slab_bytes: int) -> None:
    """Bounds and count of one label, slab by slab (down to one slice at a time) or in one
    comparison, equal np.nonzero's; a boolean ROI with label True; an absent label gives None."""
    from medimg.core.crop import label_box

    r = np.random.default_rng(seed)
    shape = tuple(int(v) for v in r.integers(1, 12, 3))
    labels = (r.random(shape) < r.choice([0.01, 0.2, 0.9])).astype(np.uint8) * r.integers(1, 4, shape).astype(np.uint8)
    for lab, arr in [(1, labels), (3, labels), (True, labels == 2), (9, labels)]:
        got = label_box(arr, lab, count=True, slab_bytes=slab_bytes)
        idx = np.nonzero(arr == lab)
        if idx[0].size == 0:
            assert got is None
            continue
        lo, hi, n = got
        assert lo.tolist() == [int(i.min()) for i in idx] and hi.tolist() == [int(i.max()) for i in idx]
        assert n == idx[0].size
        assert label_box(arr, lab, slab_bytes=slab_bytes)[2] == 0  # no count asked
    with pytest.raises(ParameterError, match="3-D"):
        label_box(labels[0], 1)
