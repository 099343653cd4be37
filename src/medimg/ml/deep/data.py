"""Cases for the CNN classifiers: images to network inputs, case tables, patient-grouped
validation splits and data hashes. NumPy and SciPy only (no torch).

A case is one image (``sequence: none``) or a time-ordered list of images (a longitudinal
study, ``sequence: lstm|gru``). Every image is resampled to the network's ``image_size`` over
its whole field of view and normalised (z-score, or an intensity window mapped to [-1, 1]).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.image import Image
from medimg.errors import ParameterError
from medimg.ml.deep.config import CNNConfig

__all__ = ["CaseSet", "prepare_image", "spatial_shape", "prepare_cases", "read_case_table", "split_by_patient", "resize"]


def resize(array: np.ndarray, shape: Sequence[int], *, order: int = 1) -> np.ndarray:
    """``array`` resampled to ``shape`` over the same field of view (voxel areas mapped onto
    each other, ``scipy.ndimage.zoom`` with ``grid_mode=True``), float32."""
    from scipy import ndimage

    array = np.asarray(array, dtype=np.float32)
    if tuple(array.shape) == tuple(shape):
        return array.copy()
    zoom = [t / s for t, s in zip(shape, array.shape, strict=True)]
    out = ndimage.zoom(array, zoom, order=order, mode="grid-constant" if order == 0 else "nearest", grid_mode=True)
    return out.astype(np.float32, copy=False)


def _channels_first(image: Image | np.ndarray, config: CNNConfig, what: str) -> np.ndarray:
    """(C, *spatial) of one image: an Image's trailing channel axis moved first; an array is one
    channel, or (C, *spatial) when the network takes several; a 2-D network also takes volumes
    of one slice."""
    if isinstance(image, Image):
        arr = np.asarray(image.array)
        arr = np.moveaxis(arr, -1, 0) if image.channel_axis == -1 else arr[None]
    else:
        arr = np.asarray(image)
        arr = arr[None] if config.in_channels == 1 or arr.ndim == config.spatial_dims else arr
    if config.spatial_dims == 2 and arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != config.spatial_dims + 1:
        msg = (f"{what}: a {config.spatial_dims}-D network needs {config.spatial_dims}-D images"
               f"{' (or 3-D with one slice)' if config.spatial_dims == 2 else ''}, got shape {np.shape(image)}")
        raise ParameterError(msg)
    if arr.shape[0] != config.in_channels:
        msg = (f"{what}: the network takes {config.in_channels} channel(s), the image has {arr.shape[0]} "
               "(several channels: an Image with a trailing channel axis, or several image columns)")
        raise ParameterError(msg)
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{what}: the image has non-finite values")
    return arr


def spatial_shape(image: Image | np.ndarray, config: CNNConfig) -> tuple[int, ...]:
    """The array shape of ``image`` without its channels (a one-slice volume keeps its z axis)."""
    if isinstance(image, Image):
        return tuple(image.spatial_shape)
    shape = tuple(np.shape(image))
    return shape if config.in_channels == 1 else shape[1:]


def prepare_image(image: Image | np.ndarray, config: CNNConfig, *, what: str = "image") -> np.ndarray:
    """The network input of one image: (in_channels, *image_size) float32, resampled and
    normalised channel by channel."""
    out = []
    for channel in _channels_first(image, config, what):
        arr = resize(channel, config.image_size)
        if config.intensity_window is None:
            sd = float(arr.std())
            arr = (arr - float(arr.mean())) / (sd if sd > 0 else 1.0)
        else:
            lo, hi = config.intensity_window
            arr = 2.0 * (np.clip(arr, lo, hi) - lo) / (hi - lo) - 1.0
        out.append(arr)
    return np.stack(out).astype(np.float32, copy=False)


@dataclass
class CaseSet:
    """Prepared cases.

    Attributes
    ----------
    inputs
        One array per case: (C, *image_size) for an image, (T, C, *image_size) for a sequence.
    labels
        Class of each case (int64, ``0..n_classes-1``), or ``None`` for unlabelled cases.
    groups
        Patient of each case (strings), or ``None`` (every case its own patient).
    ids
        Case identifiers (strings).
    """

    inputs: list[np.ndarray]
    labels: np.ndarray | None
    groups: np.ndarray | None
    ids: list[str]

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, index: Sequence[int] | np.ndarray) -> CaseSet:
        """The cases at ``index``."""
        idx = [int(i) for i in index]
        return CaseSet([self.inputs[i] for i in idx], None if self.labels is None else self.labels[idx],
                       None if self.groups is None else self.groups[idx], [self.ids[i] for i in idx])

    def sha256(self) -> str:
        """SHA-256 of the prepared inputs, labels and groups (recorded with a trained model)."""
        digest = hashlib.sha256()
        for arr in self.inputs:
            digest.update(f"{arr.dtype.str}{arr.shape}".encode())
            digest.update(np.ascontiguousarray(arr).tobytes())
        if self.labels is not None:
            digest.update(np.asarray(self.labels, dtype=np.int64).tobytes())
        if self.groups is not None:
            digest.update("\0".join(map(str, self.groups)).encode())
        return digest.hexdigest()


def prepare_cases(
    cases: Sequence[Image | np.ndarray | Sequence[Image | np.ndarray]],
    config: CNNConfig,
    *,
    labels: Sequence[int] | np.ndarray | None = None,
    groups: Sequence[Any] | np.ndarray | None = None,
    ids: Sequence[str] | None = None,
) -> CaseSet:
    """Resample and normalise ``cases`` (images, or time-ordered lists of images when
    ``config.sequence`` is not ``"none"``) into a :class:`CaseSet`."""
    if not len(cases):
        raise ParameterError("no cases")
    inputs = []
    for k, case in enumerate(cases):
        what = f"case {ids[k] if ids is not None else k}"
        if config.sequence == "none":
            if isinstance(case, (list, tuple)):
                raise ParameterError(f"{what}: a list of images needs a sequence model (sequence: lstm or gru)")
            inputs.append(prepare_image(case, config, what=what))  # type: ignore[arg-type]
        else:
            frames = [case] if isinstance(case, (Image, np.ndarray)) else list(case)  # type: ignore[arg-type]
            if not frames:
                raise ParameterError(f"{what}: an empty sequence")
            inputs.append(np.stack([prepare_image(f, config, what=f"{what} time point {t}") for t, f in enumerate(frames)]))
    n = len(inputs)
    y = None
    if labels is not None:
        y = np.asarray(labels)
        if y.shape != (n,):
            raise ParameterError(f"{y.size} labels for {n} cases")
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.equal(np.mod(y.astype(float), 1), 0)):
                raise ParameterError(f"labels must be integers 0..{config.n_classes - 1}")
        y = y.astype(np.int64)
        if y.min() < 0 or y.max() >= config.n_classes:
            raise ParameterError(f"labels must be in 0..{config.n_classes - 1} (n_classes={config.n_classes}), got {int(y.min())}..{int(y.max())}")
    g = None
    if groups is not None:
        g = np.asarray([str(v) for v in groups])
        if g.shape != (n,):
            raise ParameterError(f"{g.size} patient ids for {n} cases")
    names = [str(i) for i in ids] if ids is not None else [str(i) for i in range(n)]
    return CaseSet(inputs, y, g, names)


def split_by_patient(labels: np.ndarray, groups: np.ndarray | None, val_fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation case indices: ``val_fraction`` of the patients of each class
    (a patient's class: its most frequent label) go to validation, at least one per class when
    a class has two patients or more; a patient's cases are never split."""
    g = np.arange(labels.size).astype(str) if groups is None else np.asarray(groups)
    patients, inverse = np.unique(g, return_inverse=True)
    patient_label = np.array([np.bincount(labels[inverse == p]).argmax() for p in range(patients.size)])
    val_patients: list[int] = []
    for c in np.unique(patient_label):
        members = np.flatnonzero(patient_label == c)
        members = members[rng.permutation(members.size)]
        k = int(round(val_fraction * members.size))
        if members.size >= 2:
            k = min(max(k, 1), members.size - 1)
        val_patients.extend(members[:k].tolist())
    is_val = np.isin(inverse, val_patients)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def read_case_table(
    path: str | Path,
    *,
    image_column: str | Sequence[str] = "image",
    label_column: str | None = "label",
    patient_column: str | None = None,
    time_column: str | None = None,
    id_column: str | None = None,
) -> tuple[list[Any], np.ndarray | None, np.ndarray | None, list[str], Any]:
    """Read a CSV of cases: one row per image (``image_column``: a path, relative to the CSV's
    folder or absolute, of any file :func:`medimg.io.read` reads), its label and patient.
    Several image columns are the channels of one image (on one grid; e.g. PET and CT).

    With ``time_column`` the rows of one case (``id_column``, else the patient) form a sequence
    ordered by that column; a case's rows must share one label.

    Returns the images (or lists of images), labels (``None`` without ``label_column``),
    patients, case ids and the table (a pandas DataFrame) as read.
    """
    from medimg import io
    from medimg.io.tables import read_csv

    path = Path(path)
    frame = read_csv(path)
    image_columns = [image_column] if isinstance(image_column, str) else list(image_column)
    if not image_columns:
        raise ParameterError("image_column: no column named")
    wanted = [c for c in (*image_columns, label_column, patient_column, time_column, id_column) if c]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        from medimg.errors import did_you_mean

        raise ParameterError(f"{path}: no column {missing[0]!r}{did_you_mean(missing[0], map(str, frame.columns))}; "
                             f"columns are {[str(c) for c in frame.columns][:20]}")
    if not len(frame):
        raise ParameterError(f"{path}: no rows")

    def read_one(value: Any) -> Image:
        p = Path(str(value))
        return io.read(p if p.is_absolute() else path.parent / p)

    def load(row: Any) -> Image:
        parts = [read_one(row[c]) for c in image_columns]
        if len(parts) == 1:
            return parts[0]
        for c, part in zip(image_columns[1:], parts[1:], strict=True):
            parts[0].check_same_grid(part, names=(f"{image_columns[0]} {row[image_columns[0]]}", f"{c} {row[c]}"))
            if part.channel_axis is not None:
                raise ParameterError(f"{c} {row[c]}: a multi-channel file cannot be one channel of several")
        return Image(np.stack([np.asarray(p.array, dtype=np.float32) for p in parts], axis=-1), parts[0].affine,
                     meta=parts[0].meta, channel_axis=-1)

    key = id_column or patient_column
    if time_column is None:
        images: list[Any] = [load(row) for _, row in frame.iterrows()]
        ids = [str(v) for v in frame[id_column]] if id_column else [str(i) for i in range(len(frame))]
        labels = frame[label_column].to_numpy() if label_column else None
        groups = frame[patient_column].astype(str).to_numpy() if patient_column else None
        return images, labels, groups, ids, frame
    if key is None:
        raise ParameterError("a sequence table (time column) needs an id or a patient column to group its rows")
    images, labels_l, groups_l, ids = [], [], [], []
    for case, rows in frame.sort_values([key, time_column], kind="stable").groupby(key, sort=False):
        images.append([load(row) for _, row in rows.iterrows()])
        ids.append(str(case))
        if label_column:
            values = rows[label_column].unique()
            if values.size != 1:
                raise ParameterError(f"{path}: case {case!r} has several labels {list(values)} across its time points")
            labels_l.append(values[0])
        groups_l.append(str(rows[patient_column].iloc[0]) if patient_column else str(case))
    return images, np.asarray(labels_l) if label_column else None, np.asarray(groups_l), ids, frame
