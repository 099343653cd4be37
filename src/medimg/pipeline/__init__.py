"""The Flow layer: the one place that runs operations over many cases.

Operations (filters, segmentation, features, ...) are functions of images and parameters; they
never loop over a cohort, open a folder of cases, start a process pool or write a manifest. This
package does: :func:`run_cases` streams cases through a scheduler (serial, threads, a process
pool, a local Dask cluster or a Dask distributed scheduler), records each case's failure and
goes on, reports progress, can be cancelled, and returns what a manifest records.
"""

from __future__ import annotations

from medimg.pipeline.cases import Case, read_cases
from medimg.pipeline.executor import (
    SCHEDULERS,
    Outcome,
    RunSummary,
    default_workers,
    run_cases,
    single_thread_limits,
    summarize,
)
from medimg.pipeline.radiomics import extract_features, feature_row

__all__ = ["Case", "read_cases", "extract_features", "feature_row", "SCHEDULERS", "Outcome", "RunSummary", "default_workers", "run_cases", "single_thread_limits",
           "summarize"]
