"""PET subcommands: ``suv`` (a PET series to SUV) and ``pet-metrics`` (lesion metrics, PERCIST liver).

Thin commands over :mod:`medimg.pet`: :func:`~medimg.pet.read_pet`, :func:`~medimg.pet.to_suv`,
:func:`~medimg.pet.metrics_with_mask`, :func:`~medimg.pet.liver_reference`. The SUV override
flags (``--weight-kg``, ``--dose-bq``, ``--injection-time``, ``--half-life-s``, ``--height-m``,
``--sex``) are the ones the decision tree's error messages name.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from medimg.cli.params import check_choice, check_output, json_value

__all__ = ["register"]

_SUV_TYPES = ("bw", "lbm-james", "lbm-janma", "bsa", "ibw")


def _is_dicom_input(path: Path) -> bool:
    from medimg.core.files import full_suffix
    from medimg.io.formats import ITK_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES

    return path.is_dir() or full_suffix(path) not in NIFTI_SUFFIXES + ITK_SUFFIXES + RASTER_SUFFIXES


def _parse_point(text: str, option: str) -> list[float]:
    from medimg.errors import ParameterError

    try:
        values = [float(v) for v in text.replace(";", ",").split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ParameterError(f"{option} must be three LPS coordinates in mm, X,Y,Z (e.g. -80,-20,110), got {text!r}")
    return values


def _weight_opt() -> Any:
    return typer.Option("--weight-kg", help="Patient weight in kg (overrides Patient's Weight (0010,1030)).")


def _dose_opt() -> Any:
    return typer.Option("--dose-bq", help="Injected activity in Bq at the injection (overrides Radionuclide Total Dose (0018,1074)).")


def _inj_opt() -> Any:
    return typer.Option("--injection-time", help="Injection date-time (2024-01-02T10:00:00) or time of day (10:00:00) (overrides (0018,1078)/(0018,1072)).")


def _half_opt() -> Any:
    return typer.Option("--half-life-s", help="Radionuclide half-life in s (overrides Radionuclide Half Life (0018,1075)).")


def _height_opt() -> Any:
    return typer.Option("--height-m", help="Patient height in m, for SUL/BSA/IBW (overrides Patient's Size (0010,1020)).")


def _sex_opt() -> Any:
    return typer.Option("--sex", help="M or F, for SUL/IBW (overrides Patient's Sex (0010,0040)).")


def _type_opt() -> Any:
    return typer.Option("--suv-type", help="bw (body weight), lbm-james / lbm-janma (SUL), bsa (body surface area), ibw (ideal body weight).")


def _overrides(weight_kg: float | None, dose_bq: float | None, injection_time: str | None,
               half_life_s: float | None, height_m: float | None, sex: str | None) -> dict[str, Any]:
    return {"weight_kg": weight_kg, "dose_bq": dose_bq, "injection_time": injection_time,
            "half_life_s": half_life_s, "height_m": height_m, "sex": sex}


def register(app: typer.Typer) -> None:
    """Add the ``suv`` and ``pet-metrics`` commands to ``app``."""

    @app.command("suv")
    def suv_command(
        src: Annotated[Path, typer.Argument(metavar="SERIES", help="PET DICOM series (folder or file).")],
        dst: Annotated[Path, typer.Argument(metavar="OUT", help="SUV image to write (.nii.gz, .nii, .nrrd, .mha).")],
        suv_type: Annotated[str, _type_opt()] = "bw",
        weight_kg: Annotated[Optional[float], _weight_opt()] = None,  # noqa: UP045
        dose_bq: Annotated[Optional[float], _dose_opt()] = None,  # noqa: UP045
        injection_time: Annotated[Optional[str], _inj_opt()] = None,  # noqa: UP045
        half_life_s: Annotated[Optional[float], _half_opt()] = None,  # noqa: UP045
        height_m: Annotated[Optional[float], _height_opt()] = None,  # noqa: UP045
        sex: Annotated[Optional[str], _sex_opt()] = None,  # noqa: UP045
        series: Annotated[Optional[str], typer.Option("--series", help="Series Instance UID when SERIES holds several.")] = None,  # noqa: UP045
        as_json: Annotated[bool, typer.Option("--json", help="Print the SUV record (factor, values, branches) as JSON.")] = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    ) -> None:
        """Convert a PET series to SUV by the QIBA vendor-neutral decision tree and write OUT.

        Prints the factor and every branch of the tree taken. A header the tree cannot resolve gives one line naming the tag and the flag that overrides it.
        """
        from medimg import io
        from medimg.pet import read_pet, to_suv

        check_choice(suv_type, _SUV_TYPES, "--suv-type")
        check_output(dst, overwrite)
        pet = read_pet(src, series_uid=series)
        out = to_suv(pet, suv_type=suv_type, op="cli.suv",  # type: ignore[arg-type]
                     **_overrides(weight_kg, dose_bq, injection_time, half_life_s, height_m, sex))
        io.write(out, dst)
        record = out.meta["suv"]
        if as_json:
            typer.echo(json.dumps(json_value(record), indent=2))
            return
        factor = record["factor"]
        shown = f"{factor:.6g}" if isinstance(factor, float) else f"{min(factor):.6g}..{max(factor):.6g} (per slice)"
        typer.echo(f"wrote {dst}: SUV{suv_type} ({record['units']}), factor {shown} per {record.get('units_in') or 'unit'}")
        for branch in record["branches"]:
            typer.echo(f"  - {branch}")

    @app.command("pet-metrics")
    def pet_metrics_command(
        pet_path: Annotated[Path, typer.Argument(metavar="PET", help="PET DICOM series (converted to SUV here), or an SUV image with --assume-suv.")],
        mask_path: Annotated[Path, typer.Argument(metavar="MASK", help="Lesion label map (on the PET's grid or, e.g., the CT's).")],
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a table.")] = False,
        label: Annotated[int, typer.Option("--label", help="Lesion label in MASK.")] = 1,
        grid: Annotated[str, typer.Option("--grid", help="When MASK is on another grid: 'pet' resamples MASK onto the PET (nearest), 'mask' the SUV onto MASK's grid (linear).")] = "pet",
        assume_suv: Annotated[bool, typer.Option("--assume-suv", help="PET is an image file whose values are SUV (g/ml) already.")] = False,
        ct: Annotated[Optional[Path], typer.Option("--ct", help="The CT series MASK was drawn on: checked to be the PET's patient and frame of reference.")] = None,  # noqa: UP045
        allow_other_frame: Annotated[bool, typer.Option("--allow-other-frame", help="Accept a CT in another Frame of Reference (registered already).")] = False,
        liver_mask: Annotated[Optional[Path], typer.Option("--liver-mask", help="Liver label map: PERCIST reference sphere placed in its right lobe.")] = None,  # noqa: UP045
        liver_centre: Annotated[Optional[str], typer.Option("--liver-centre", help="PERCIST reference sphere centre X,Y,Z in LPS mm.")] = None,  # noqa: UP045
        sul_type: Annotated[str, typer.Option("--sul-type", help="Lean body mass formula of the liver SUL: lbm-janma or lbm-james.")] = "lbm-janma",
        suv_type: Annotated[str, _type_opt()] = "bw",
        weight_kg: Annotated[Optional[float], _weight_opt()] = None,  # noqa: UP045
        dose_bq: Annotated[Optional[float], _dose_opt()] = None,  # noqa: UP045
        injection_time: Annotated[Optional[str], _inj_opt()] = None,  # noqa: UP045
        half_life_s: Annotated[Optional[float], _half_opt()] = None,  # noqa: UP045
        height_m: Annotated[Optional[float], _height_opt()] = None,  # noqa: UP045
        sex: Annotated[Optional[str], _sex_opt()] = None,  # noqa: UP045
        series: Annotated[Optional[str], typer.Option("--series", help="PET Series Instance UID when PET holds several.")] = None,  # noqa: UP045
    ) -> None:
        """Lesion metrics of PET in MASK: SUVmax, SUVmean, SUVpeak, MTV (SUV >= 2.5, 41 % and 50 % of SUVmax), TLG.

        With --liver-mask or --liver-centre, also the PERCIST liver reference (SUL mean and SD in a 3 cm sphere).
        """
        from medimg import io
        from medimg.errors import ParameterError, UserInputError
        from medimg.pet import (
            check_same_patient,
            liver_reference,
            metrics_with_mask,
            onto_grid,
            read_pet,
            to_suv,
        )

        check_choice(grid, ("pet", "mask"), "--grid")
        check_choice(suv_type, _SUV_TYPES, "--suv-type")
        check_choice(sul_type, ("lbm-janma", "lbm-james"), "--sul-type")
        if liver_mask is not None and liver_centre is not None:
            raise ParameterError("give either --liver-mask or --liver-centre, not both")
        overrides = _overrides(weight_kg, dose_bq, injection_time, half_life_s, height_m, sex)
        dicom = _is_dicom_input(pet_path)
        if not pet_path.exists():
            raise UserInputError(f"{pet_path}: no such file or folder")
        if dicom and assume_suv:
            raise ParameterError("--assume-suv is for image files holding SUV; a DICOM PET series is converted here")
        if dicom:
            pet = read_pet(pet_path, series_uid=series)
            suv = to_suv(pet, suv_type=suv_type, op="cli.pet-metrics", **overrides)  # type: ignore[arg-type]
        else:
            if not assume_suv:
                msg = (f"{pet_path}: an image file does not say whether it holds SUV; convert the DICOM series with "
                       "`medimg suv`, or pass --assume-suv if its values are SUV (g/ml)")
                raise ParameterError(msg)
            if any(v is not None for v in overrides.values()):
                raise ParameterError("the SUV flags apply to a DICOM PET series, not to an SUV image (--assume-suv)")
            pet = io.read(pet_path)
            suv = pet.with_array(pet.array, meta={**pet.meta, "units": "g/ml"})
        notes: list[str] = []
        if ct is not None:
            if not dicom:
                raise ParameterError("--ct checks the PET's DICOM header; PET must be a DICOM series")
            notes = check_same_patient(pet, io.read(ct), allow_other_frame=allow_other_frame)
        mask = io.read(mask_path)
        result: dict[str, Any] = metrics_with_mask(suv, mask, grid=grid, label=label)  # type: ignore[arg-type]
        result["suv_type"] = suv_type if dicom else "given (--assume-suv)"
        if liver_mask is not None or liver_centre is not None:
            if dicom:
                sul = suv if suv_type == sul_type else to_suv(pet, suv_type=sul_type, op="cli.pet-metrics", **overrides)  # type: ignore[arg-type]
            else:
                sul = suv
            liver = None
            if liver_mask is not None:
                liver = io.read(liver_mask)
                if not liver.same_grid(sul):
                    liver = onto_grid(liver, sul)
            centre = _parse_point(liver_centre, "--liver-centre") if liver_centre is not None else None
            result["liver"] = liver_reference(sul, centre_mm=centre, liver_mask=liver)
        if notes:
            result["notes"] = notes
        if as_json:
            typer.echo(json.dumps(json_value(result), indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("metric", "value")
        for key, value in result.items():
            if isinstance(value, dict):
                for k2, v2 in value.items():
                    table.add_row(f"liver.{k2}", _fmt(v2))
            else:
                table.add_row(key, _fmt(value))
        Console(highlight=False, file=sys.stdout).print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)
