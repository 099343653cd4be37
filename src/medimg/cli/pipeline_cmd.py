"""``medimg run`` and ``medimg reproduce``: studies as pipelines.

Thin layer over :mod:`medimg.pipeline`: the study is validated before any work starts (an error
names its YAML path, exit 2); cases run through the executor with a progress bar per step and an
overall ETA; the summary table lists every step; failed cases are listed and make the exit
status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

__all__ = ["register"]


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``run`` and ``reproduce`` commands to ``app``."""

    @app.command("run")
    def run_command(
        study_file: Annotated[Path, typer.Argument(metavar="STUDY.yaml", help="The study: inputs, steps, outputs (docs/pipeline.md).")],
        out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder or URL (s3://bucket/prefix); a re-run into it resumes. Default: runs/<study name>.")] = None,  # noqa: UP045
        scheduler: Annotated[str, typer.Option("--scheduler", help="processes (default), threads, serial, dask (a local cluster), or a Dask scheduler address tcp://HOST:PORT.")] = "processes",
        workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Local workers (default: all cores).")] = None,  # noqa: UP045
        check: Annotated[bool, typer.Option("--check", help="Validate the study and list its cases and steps; run nothing.")] = False,
    ) -> None:
        """Run a study (YAML) over its cases: cached, resumable, with a manifest and a run log."""
        from medimg.pipeline.runner import gather_cases
        from medimg.pipeline.steps import resolve_plan
        from medimg.pipeline.study import load_study

        study, base = load_study(study_file)
        plan = resolve_plan(study, base)
        if check:
            cases = gather_cases(study, base)
            typer.echo(f"study {study.name!r}: {len(cases)} cases, {len(plan.steps)} steps: "
                       + ", ".join(f"{s.id} ({s.op_name})" for s in plan.steps))
            return
        target = out or str(Path("runs") / study.name)
        console = _console()
        result = _run_with_progress(study, plan, target, base, scheduler, workers, console,
                                    source=study_file.read_text(encoding="utf-8"),
                                    command=" ".join(["medimg", *sys.argv[1:]]) if sys.argv[1:2] == ["run"]
                                    else f"medimg run {study_file}")
        _summary(result, plan, console)
        typer.echo(f"wrote {result.out}: {result.n_ok} of {result.n_cases} cases; manifest {result.manifest}")
        if result.report:
            typer.echo(f"report: {result.report}")
        if result.failures:
            raise typer.Exit(1)

    @app.command("reproduce")
    def reproduce_command(
        manifest: Annotated[Path, typer.Argument(metavar="MANIFEST.json", help="The manifest.json of a `medimg run`.")],
        out: Annotated[Optional[str], typer.Option("--out", "-o", help="Where to re-run (a new folder; default: a temporary one).")] = None,  # noqa: UP045
        scheduler: Annotated[str, typer.Option("--scheduler", help="As for `medimg run`.")] = "processes",
        workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Local workers.")] = None,  # noqa: UP045
        rtol: Annotated[float, typer.Option("--rtol", min=0.0, help="Relative tolerance for outputs whose hash differs.")] = 1e-6,
        as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    ) -> None:
        """Re-run a study from its manifest and compare every output; name the ones that differ."""
        import json

        from medimg.pipeline.reproduce import reproduce

        report = reproduce(manifest, out=out, scheduler=scheduler, workers=workers, rtol=rtol)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            for d in report.differences:
                typer.echo(f"{d.status}: case {d.case}, {d.step}: {d.detail}")
            typer.echo(f"{report.n_identical} of {report.n_compared} outputs identical, "
                       f"{report.n_within_tolerance} within tolerance (rtol {rtol}), "
                       f"{report.n_not_stored} not stored (compared through the steps that read them); "
                       f"re-run in {report.out}")
        if not report.ok:
            raise typer.Exit(1)


def _run_with_progress(study: Any, plan: Any, target: str, base: Path, scheduler: str, workers: int | None,
                       console: Any, *, source: str, command: str) -> Any:
    """Run through :mod:`medimg.core.progress`: the CLI's bar shows the cases (with an ETA) and
    one bar per step; a failed case is printed as it happens."""
    from medimg.core.progress import Steps
    from medimg.pipeline.runner import run_study

    counters: dict[str, Any] = {}

    def progress(outcome: Any, done: int, total: int) -> None:
        if not counters:
            counters["cases"] = Steps(total, "cases")
            counters.update({s.id: Steps(total, f"  step {s.id}") for s in plan.steps})
        counters["cases"].update(done)
        if outcome.ok:
            for record in outcome.value.steps:
                counters[record.step].advance()
        else:
            console.print(f"failed {outcome.key}: {outcome.error}")

    return run_study(study, target, base=base, scheduler=scheduler, workers=workers, progress=progress,
                     source=source, command=command)


def _summary(result: Any, plan: Any, console: Any) -> None:
    from rich.table import Table

    table = Table("step", "op", "computed", "cached", "not needed", "mean s/case", title=f"{result.n_ok} of {result.n_cases} "
                  f"cases in {result.seconds:.1f} s")
    for step in plan.steps:
        stats = result.step_stats.get(step.id, {})
        table.add_row(step.id, step.op_name, str(int(stats.get("computed", 0))), str(int(stats.get("cached", 0))),
                      str(int(stats.get("not_needed", 0))), f"{stats.get('seconds_mean', 0.0):.3f}")
    console.print(table)
    for failure in result.failures:
        console.print(f"failed: {failure.key}: {failure.error}")
