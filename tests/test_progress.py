"""Progress reporting: long operations report through medimg.core.progress, the default costs
nothing measurable, and the CLI draws a Rich bar only on a terminal.

Known answers: the number of steps each operation must report is computed here independently
(search offsets of the NLM window, families and filter responses, iterations, MONAI's sliding
windows).
"""

from __future__ import annotations

import io as stdio
import math
import threading
import time
import warnings

import numpy as np
import pytest

from medimg import Image
from medimg.core import progress


class Recorder:
    """A reporter that keeps every call (thread-safe)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None, str]] = []
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int | None, what: str) -> None:
        with self._lock:
            self.calls.append((done, total, what))

    def of(self, what: str) -> list[tuple[int, int | None]]:
        return [(d, t) for d, t, w in self.calls if w == what]


def _check_complete(calls: list[tuple[int, int | None]], total: int) -> None:
    assert calls, "nothing was reported"
    assert all(t == total for _, t in calls)
    done = [d for d, _ in calls]
    assert done[0] == 0 and done[-1] == total and done == sorted(done) and max(done) <= total


# --------------------------------------------------------------------------- the mechanism
def test_default_is_silent_and_reporting_nests_and_restores() -> None:
    assert progress.current() is None
    progress.report(1, 2, "nobody listens")  # a no-op
    outer, inner = Recorder(), Recorder()
    with progress.reporting(outer):
        progress.report(1, 3, "a")
        with progress.reporting(inner):
            progress.report(2, 3, "a")
        with progress.reporting(None):
            progress.report(9, 9, "silenced")
        progress.report(3, 3, "a")
    assert progress.current() is None
    assert outer.calls == [(1, 3, "a"), (3, 3, "a")] and inner.calls == [(2, 3, "a")]
    with pytest.raises(RuntimeError), progress.reporting(outer):
        raise RuntimeError("boom")
    assert progress.current() is None  # restored on an exception too


def test_reporter_is_local_to_the_thread_but_steps_carry_it_into_workers() -> None:
    rec = Recorder()
    seen: list[object] = []
    with progress.reporting(rec):
        steps = progress.Steps(8, "work")
        threads = [threading.Thread(target=lambda: (seen.append(progress.current()), [steps.advance() for _ in range(2)]))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert seen == [None] * 4  # a new thread does not inherit the context ...
    _check_complete(rec.of("work"), 8)  # ... but the Steps made in the caller's thread reports
    assert len(rec.of("work")) == 9


def test_steps_clamp_finish_update_and_track() -> None:
    rec = Recorder()
    with progress.reporting(rec):
        s = progress.Steps(3, "short")
        for _ in range(5):  # a total that was an underestimate
            s.advance()
        s.finish()
        e = progress.Steps(10, "early")
        e.advance(4)
        e.finish()  # converged early
        u = progress.Steps(None, "open")
        u.update(5)
        u.finish()
        assert list(progress.track(["x", "y"], "items")) == ["x", "y"]
    assert rec.of("short") == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert rec.of("early") == [(0, 10), (4, 10), (10, 10)]
    assert rec.of("open") == [(0, None), (5, None), (5, 5)]
    assert rec.of("items") == [(0, 2), (1, 2), (2, 2)]


def test_the_default_costs_nothing_measurable() -> None:
    """Without a reporter a report is one context-variable look-up (about 0.5 us here),
    against the milliseconds of each unit of work it marks (an NLM search offset, a family)."""
    n = 200_000
    steps = progress.Steps(n, "x")
    best_report = best_advance = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            progress.report(1, 2, "x")
        best_report = min(best_report, (time.perf_counter() - t0) / n)
        t0 = time.perf_counter()
        for _ in range(n):
            steps.advance()
        best_advance = min(best_advance, (time.perf_counter() - t0) / n)
    assert best_report < 5e-6 and best_advance < 5e-6, (best_report, best_advance)  # loaded 2-core machine
    # The NLM run below reports once per offset: 37 reports, i.e. < 0.2 ms of a run that takes
    # tens of milliseconds.
    assert 37 * max(best_report, best_advance) < 2e-4


# --------------------------------------------------------------------------- the operations
def test_nlm_reports_one_step_per_search_offset() -> None:
    from medimg.filters import nlm

    rng = np.random.default_rng(0)
    image = Image.from_geometry(rng.normal(100, 10, (8, 16, 16)).astype(np.float32), spacing=(1.0, 1.0, 2.0))
    rec = Recorder()
    with progress.reporting(rec):
        out = nlm(image, search_radius_mm=2.0, patch_radius_mm=1.0, sigma=10.0, workers=2)
    radii = (1, 2, 2)  # search radius in voxels (z, y, x): 2 mm / (2, 1, 1) mm
    offsets = (math.prod(2 * r + 1 for r in radii) - 1) // 2  # one of each +-o pair
    assert offsets == 37
    _check_complete(rec.of("nlm"), offsets)
    np.testing.assert_array_equal(out.array, nlm(image, search_radius_mm=2.0, patch_radius_mm=1.0, sigma=10.0,
                                                 workers=2).array)  # the same result without a reporter


def test_feature_extraction_reports_per_family_and_filter_response() -> None:
    from medimg.features import RadiomicsConfig, extract
    from medimg.features.config import FilterConfig

    z, y, x = np.indices((6, 12, 12))
    image = Image((x * 3 + y + z).astype(np.float32))
    mask = Image(((x - 6) ** 2 + (y - 6) ** 2 < 16).astype(np.uint8))
    config = RadiomicsConfig(families=("stat", "ih", "glcm"),
                             filters=(FilterConfig(name="mean", params={"support": 3}, families=("stat", "ih")),))
    rec = Recorder()
    with progress.reporting(rec):
        values = extract(image, mask, config=config)
    _check_complete(rec.of("features"), 3 + 1 + 2)  # three families; one response and its two families
    assert len(rec.of("features")) == 7
    assert values == extract(image, mask, config=config)


def test_n4_reports_its_iterations() -> None:
    from medimg.filters import n4

    z, y, x = np.indices((8, 32, 32))
    truth = np.where((x - 16) ** 2 + (y - 16) ** 2 < 150, 200.0, 100.0)
    image = Image.from_geometry((truth * np.exp(0.02 * x)).astype(np.float32), spacing=(2.0, 2.0, 2.0))
    rec = Recorder()
    with progress.reporting(rec):
        n4(image, iterations=20, fitting_levels=2, working_spacing_mm=2.0)
    calls = rec.of("n4")
    _check_complete(calls, 40)
    assert len(calls) > 3  # iteration by iteration, not just start and end


@pytest.mark.parametrize(("method", "what"), [("chan_vese", "chan_vese"),
                                              ("geodesic_active_contour", "geodesic_active_contour")])
def test_level_sets_report_every_iteration(method: str, what: str) -> None:
    from medimg.segmentation import segment

    z, y, x = np.indices((6, 24, 24))
    image = Image(np.where((x - 12) ** 2 + (y - 12) ** 2 < 30, 100.0, 0.0).astype(np.float32))
    rec = Recorder()
    with progress.reporting(rec):
        segment(image, method, iterations=7, seeds_voxel=[(12, 12, 3)])
    assert rec.of(what) == [(k, 7) for k in range(8)]


def test_unet_window_count_matches_monai() -> None:
    pytest.importorskip("monai")
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    from medimg.segmentation.unet.infer import window_batches

    for shape, patch, overlap, batch in [((20, 40, 50), (16, 32, 32), 0.25, 2), ((16, 32, 32), (16, 32, 32), 0.5, 1),
                                         ((33, 70, 71), (16, 16, 16), 0.5, 4), ((10, 12, 12), (16, 16, 16), 0.25, 3)]:
        padded = tuple(max(s, p) for s, p in zip(shape, patch, strict=True))
        interval = _get_scan_interval(padded, patch, 3, (overlap,) * 3)
        windows = len(dense_patch_slices(padded, patch, interval))
        assert window_batches(shape, patch, overlap, batch) == math.ceil(windows / batch), (shape, patch)


def test_unet_inference_reports_each_network_call() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("monai")
    from medimg.segmentation.unet.config import UNetConfig
    from medimg.segmentation.unet.infer import (
        UNetModel,
        _probabilities,
        build_network,
        window_batches,
    )

    torch.manual_seed(0)
    cfg = UNetConfig(spatial_dims=3, patch_size=(16, 16, 16), channels=(4, 8), strides=(2,), sw_batch_size=2)
    network = build_network(cfg)
    calls = [0]
    network.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    model = UNetModel(network=network, config=cfg, spacing_mm=(1.0, 1.0, 1.0))
    values = np.zeros((20, 24, 30), np.float32)
    rec = Recorder()
    with progress.reporting(rec):
        _probabilities(values, model)
    total = window_batches(values.shape, cfg.patch_size, cfg.overlap, cfg.sw_batch_size)
    assert calls[0] == total
    _check_complete(rec.of("unet"), total)


# --------------------------------------------------------------------------- the CLI
class _Tty(stdio.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_installs_a_rich_bar_only_on_a_terminal() -> None:
    from medimg.cli.runtime import RichReporter, invocation

    with invocation(["filter"], stderr=stdio.StringIO()):
        assert progress.current() is None  # not a terminal: no bar
    tty = _Tty()
    with invocation(["filter"], stderr=tty):
        reporter = progress.current()
        assert isinstance(reporter, RichReporter)
        steps = progress.Steps(4, "nlm")
        steps.advance(2)
        assert list(reporter._tasks) == ["nlm"]
        steps.advance(2)
        assert reporter._tasks == {}  # a finished bar is removed
    assert progress.current() is None


def test_cli_prints_a_warning_as_one_line() -> None:
    from medimg.cli.runtime import invocation

    err = stdio.StringIO()
    with invocation([], stderr=err):
        warnings.warn("two\nlines  of text", UserWarning, stacklevel=1)
    assert err.getvalue() == "warning: two lines of text\n"
