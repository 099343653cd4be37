"""Explanations: where a CNN looks (Grad-CAM, occlusion sensitivity, overlays) and what a
feature model uses (permutation importance, per-case Shapley contributions).

Image maps are returned as :class:`~medimg.core.image.Image` objects on the grid of the image
explained (the network sees the image resampled to its ``image_size``; the map is resampled
back), so they overlay the image directly and can be written as NIfTI.

Per-case contributions are Shapley values of the model's log-odds, "interventional" (a
feature absent from a coalition takes its value from a background row), estimated by sampling
feature orderings (Štrumbelj & Kononenko 2014) with antithetic pairs. For an additive model
(a linear model on per-feature transforms, e.g. standardisation + logistic regression) every
ordering gives the same contributions, so the estimate is exact there: coefficient ×
(standardised x − standardised background mean). For other models the error shrinks as
1/sqrt(n_permutations); the contributions of a case always add up exactly to its log-odds minus
the mean log-odds of the background (efficiency).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.image import Image
from medimg.core.optional import require
from medimg.errors import ParameterError

__all__ = ["grad_cam", "occlusion_sensitivity", "save_overlay", "permutation_importance", "Contributions",
           "shapley_contributions"]


# ------------------------------------------------------------------------------- images
def _single_input(model: Any, image: Image | np.ndarray) -> Any:
    import torch

    from medimg.ml.deep.data import prepare_image

    if model.config.sequence != "none":
        raise ParameterError("image explanations need a single-image model (sequence: none); explain its time points "
                             "with the CNN the sequence model was initialised from")
    return torch.from_numpy(prepare_image(image, model.config)[None])


def _target(model: Any, target: int | None) -> int:
    t = (1 if model.config.n_classes == 2 else 0) if target is None else int(target)
    if not 0 <= t < model.config.n_classes:
        raise ParameterError(f"target must be a class in 0..{model.config.n_classes - 1}, got {target}")
    return t


def _on_image_grid(values: np.ndarray, image: Image | np.ndarray, model: Any) -> Image:
    """A map of the network input size brought back to ``image``'s grid (linear), as an Image."""
    from medimg.ml.deep.data import resize, spatial_shape

    target = spatial_shape(image, model.config)
    if len(target) == values.ndim + 1:  # a 2-D network on a one-slice volume
        out = resize(values, target[1:])[None]
    else:
        out = resize(values, target)
    if isinstance(image, Image):
        return Image(out.astype(np.float32), image.affine, meta={"what": "saliency"})
    return Image(out.astype(np.float32))


def grad_cam(model: Any, image: Image | np.ndarray, *, target: int | None = None, layer: str | None = None,
             input_space: bool = False) -> Image:
    """Grad-CAM (Selvaraju et al. 2017) of a CNN classifier for one image.

    The activations ``A_k`` of ``layer`` (default: the last convolutional stage) are weighted by
    the spatial mean of the gradient of the target class's logit, summed, rectified,
    upsampled (linear) to the network input and scaled to [0, 1] (as MONAI's ``GradCAM``, whose
    default normaliser maps the largest value to 0 rather than 1).
    Grad-CAM shows positive evidence only and its resolution is that of ``layer`` (a 32-voxel
    input gives a 4 x 4 map at the last stage of ``resnet_tiny``; ``backbone.layer3`` is twice
    as fine); a network that decides from the absence of a pattern can give a misleading map.
    :func:`occlusion_sensitivity` asks the network directly and needs no layer.

    Parameters
    ----------
    model
        A :class:`~medimg.ml.deep.model.CNNModel` (one image per case).
    image
        The image (2-D, or 3-D for a 3-D network; a one-slice volume for a 2-D one).
    target
        The class explained (default: 1 for two classes, else 0).
    layer
        A module name of ``model.network`` (``dict(model.network.named_modules())``).
    input_space
        Return the map on the network input grid (``image_size``, unit spacing) instead of
        ``image``'s grid.

    Returns
    -------
    Image
        The map (float32, 0..1) on ``image``'s grid.
    """
    torch = require("torch", extra="dl")
    from medimg.ml.deep.networks import cam_layer_name

    x = _single_input(model, image)
    t = _target(model, target)
    name = layer or cam_layer_name(model.config)
    modules = dict(model.network.named_modules())
    if name not in modules:
        from medimg.errors import did_you_mean

        raise ParameterError(f"no layer {name!r} in the network{did_you_mean(name, modules)}")
    saved: dict[str, Any] = {}

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        output.retain_grad()
        saved["a"] = output

    handle = modules[name].register_forward_hook(hook)
    network = model.network
    network.eval()
    try:
        with torch.enable_grad():
            x = x.clone().requires_grad_(True)
            logits = network(x)
            network.zero_grad()
            logits[0, t].backward()
    finally:
        handle.remove()
    acts, grads = saved["a"].detach(), saved["a"].grad.detach()
    weights = grads.mean(dim=tuple(range(2, grads.ndim)), keepdim=True)
    cam = torch.relu((weights * acts).sum(dim=1, keepdim=True))
    mode = "bilinear" if cam.ndim == 4 else "trilinear"
    cam = torch.nn.functional.interpolate(cam, size=tuple(x.shape[2:]), mode=mode, align_corners=False)[0, 0]
    cam = cam.numpy().astype(np.float64)
    lo, hi = cam.min(), cam.max()
    cam = (cam - lo) / (hi - lo) if hi > lo else np.zeros_like(cam)
    if input_space:
        return Image(cam.astype(np.float32))
    return _on_image_grid(cam, image, model)


def occlusion_sensitivity(model: Any, image: Image | np.ndarray, *, target: int | None = None,
                          patch_mm: float | None = None, stride_mm: float | None = None,
                          batch_size: int = 64) -> Image:
    """Occlusion sensitivity (Zeiler & Fergus 2014): the drop of the target-class probability
    when a cube (square) of the normalised image is set to 0 (the image mean), averaged over
    every patch position that covers a voxel.

    Parameters
    ----------
    model, image, target
        As for :func:`grad_cam`.
    patch_mm
        Edge of the occluding patch in mm (default: an eighth of the field of view, at least
        two input voxels). For an image without geometry (an array), mm are network-input voxels.
    stride_mm
        Step between patch positions in mm (default: half the patch).

    Returns
    -------
    Image
        Probability drop per voxel (positive where occlusion lowers the target probability),
        on ``image``'s grid.
    """
    torch = require("torch", extra="dl")
    x = _single_input(model, image)
    t = _target(model, target)
    from medimg.ml.deep.data import spatial_shape

    size = np.array(x.shape[2:])
    if isinstance(image, Image):  # mm per network-input voxel, per axis (array order)
        arr_shape = np.array(spatial_shape(image, model.config)[-len(size):])
        spacing_arr = np.array(image.spacing[: image.spatial_ndim][::-1])[-len(size):]
        input_mm = arr_shape * spacing_arr / size
    else:
        input_mm = np.ones(len(size))
    patch_mm = float(np.max(size * input_mm) / 8) if patch_mm is None else float(patch_mm)
    if patch_mm <= 0:
        raise ParameterError(f"patch_mm must be > 0, got {patch_mm}")
    patch = np.maximum(2, np.round(patch_mm / input_mm)).astype(int)
    patch = np.minimum(patch, size)
    stride = (np.maximum(1, patch // 2) if stride_mm is None
              else np.maximum(1, np.round(float(stride_mm) / input_mm)).astype(int))
    starts = [list(range(0, int(s - p) + 1, int(st))) for s, p, st in zip(size, patch, stride, strict=True)]
    for axis, (s, p) in enumerate(zip(size, patch, strict=True)):  # cover the far edge too
        if starts[axis][-1] != s - p:
            starts[axis].append(int(s - p))
    corners = np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, len(size))
    network = model.network
    network.eval()
    with torch.no_grad():
        base = float(torch.softmax(network(x), 1)[0, t])
        drops = np.empty(len(corners))
        for start in range(0, len(corners), batch_size):
            chunk = corners[start:start + batch_size]
            batch = x.repeat(len(chunk), *([1] * (x.ndim - 1)))
            for i, c in enumerate(chunk):
                sl = tuple(slice(int(a), int(a + p)) for a, p in zip(c, patch, strict=True))
                batch[(i, slice(None), *sl)] = 0.0
            drops[start:start + len(chunk)] = base - torch.softmax(network(batch), 1)[:, t].numpy()
    total = np.zeros(tuple(size))
    count = np.zeros(tuple(size))
    for c, d in zip(corners, drops, strict=True):
        sl = tuple(slice(int(a), int(a + p)) for a, p in zip(c, patch, strict=True))
        total[sl] += d
        count[sl] += 1
    return _on_image_grid(total / np.maximum(count, 1), image, model)


def save_overlay(image: Image | np.ndarray, heatmap: Image | np.ndarray, path: str | Path, *,
                 slice_index: int | None = None, alpha: float = 0.45, title: str = "") -> Path:
    """Write a PNG of ``image`` (grey) with ``heatmap`` (colour, transparent where low) on top.

    For volumes, ``slice_index`` (array axis 0; default: the slice where the heatmap is
    largest) is shown.
    """
    from medimg.ml.plots import _pyplot, _save

    img = np.asarray(image.array if isinstance(image, Image) else image, dtype=float)
    if isinstance(image, Image) and image.channel_axis == -1:
        img = img[..., 0]  # the first channel is shown
    heat = np.asarray(heatmap.array if isinstance(heatmap, Image) else heatmap, dtype=float)
    if img.shape != heat.shape:
        raise ParameterError(f"heatmap shape {heat.shape} differs from the image's {img.shape}")
    if img.ndim == 3:
        k = int(np.argmax(heat.reshape(heat.shape[0], -1).max(1))) if slice_index is None else int(slice_index)
        if not 0 <= k < img.shape[0]:
            raise ParameterError(f"slice_index must be in 0..{img.shape[0] - 1}, got {k}")
        img, heat = img[k], heat[k]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.imshow(img, cmap="gray", interpolation="nearest")
    span = np.abs(heat).max()
    shown = np.ma.masked_where(np.abs(heat) < 0.1 * span, heat) if span > 0 else np.ma.masked_all(heat.shape)
    im = ax.imshow(shown, cmap="jet", alpha=alpha, interpolation="bilinear")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


# ------------------------------------------------------------------------ feature models
def _matrix_and_model(model: Any, features: Any) -> tuple[np.ndarray, Any, tuple[str, ...]]:
    """Feature matrix (in the model's column order) and a fitted estimator with predict_proba."""
    from medimg.ml.validation import as_matrix

    if hasattr(model, "pipeline") and hasattr(model, "feature_names"):  # a TrainedPipeline
        names = model.feature_names
        if hasattr(features, "columns"):
            missing = [c for c in names if c not in set(map(str, features.columns))]
            if missing:
                raise ParameterError(f"features lack the model's columns {missing[:10]}")
            features = features[list(names)]
        x, _ = as_matrix(features, allow_missing=model.config["settings"].get("impute", "none") != "none")
        return x, model.pipeline, tuple(names)
    x, names = as_matrix(features, allow_missing=True)
    if not hasattr(model, "predict_proba"):
        raise ParameterError("model needs predict_proba (a fitted classifier or a medimg TrainedPipeline)")
    return x, model, tuple(names)


def _positive_column(estimator: Any) -> int:
    classes = list(getattr(estimator, "classes_", [0, 1]))
    return classes.index(1) if 1 in classes else len(classes) - 1


def permutation_importance(model: Any, features: Any, labels: Any, *, n_repeats: int = 10, seed: int = 0,
                           scoring: str = "roc_auc") -> list[dict[str, Any]]:
    """Permutation importance (Breiman 2001; scikit-learn's implementation): the drop of
    ``scoring`` when one feature's values are shuffled across rows, ``n_repeats`` times.

    Compute it on data the model was not fitted on (a validation fold) to measure what the
    model uses to generalise. ``labels`` are 0/1 (1 positive) or the model's label values.

    Returns one dict per feature, most important first: ``feature``, ``importance`` (mean
    drop), ``std``, ``rank``.
    """
    require("sklearn", extra="ml")
    from sklearn.inspection import permutation_importance as sk_permutation_importance

    x, estimator, names = _matrix_and_model(model, features)
    y = np.asarray(labels.to_numpy() if hasattr(labels, "to_numpy") else labels)
    if hasattr(model, "config") and isinstance(getattr(model, "config", None), dict) and "positive_label" in model.config:
        pos = model.config["positive_label"]
        if set(np.unique(y)) - {0, 1} or pos not in (0, 1):
            y = (y == pos).astype(np.int64)
    if n_repeats < 1:
        raise ParameterError(f"n_repeats must be >= 1, got {n_repeats}")
    result = sk_permutation_importance(estimator, x, y, scoring=scoring, n_repeats=n_repeats, random_state=seed)
    order = np.argsort(-result.importances_mean, kind="stable")
    return [{"feature": names[j], "importance": float(result.importances_mean[j]),
             "std": float(result.importances_std[j]), "rank": r + 1} for r, j in enumerate(order)]


@dataclass
class Contributions:
    """Per-case Shapley contributions to the log-odds of the positive class.

    Attributes
    ----------
    values
        (n_cases, n_features): each feature's contribution (log-odds units).
    base
        Mean log-odds over the background rows; ``base + values.sum(1)`` equals each case's
        log-odds (exactly).
    features
        Feature names, in column order.
    log_odds
        Each case's log-odds.
    """

    values: np.ndarray
    base: float
    features: tuple[str, ...]
    log_odds: np.ndarray

    def mean_abs(self) -> dict[str, float]:
        """Mean absolute contribution of each feature (a global importance), largest first."""
        m = np.abs(self.values).mean(0)
        return {self.features[j]: float(m[j]) for j in np.argsort(-m, kind="stable")}


def shapley_contributions(model: Any, features: Any, *, background: Any = None, n_permutations: int = 32,
                          max_background: int = 50, seed: int = 0) -> Contributions:
    """Per-case Shapley contributions of each feature to the model's log-odds (see the module
    notes: interventional, estimated over ``n_permutations`` feature orderings, exact for
    additive models, always efficient).

    Parameters
    ----------
    model
        A :class:`~medimg.ml.models.TrainedPipeline` or a fitted classifier with ``predict_proba``.
    features
        The cases to explain (a DataFrame with the model's columns, or an array).
    background
        Rows that stand in for "feature absent" (default: the column means of ``features``,
        one row; pass training rows for the interventional expectation). At most
        ``max_background`` rows are used (a seeded sample).
    n_permutations
        Feature orderings per case (rounded up to an even number: each with its reverse).
    seed
        Seeds the orderings and the background sample.
    """
    x, estimator, names = _matrix_and_model(model, features)
    if background is None:
        bg = np.nanmean(x, axis=0, keepdims=True)
    else:
        bg = _matrix_and_model(model, background)[0]
    rng = np.random.default_rng(seed)
    if bg.shape[0] > max_background:
        bg = bg[rng.choice(bg.shape[0], max_background, replace=False)]
    if bg.shape[1] != x.shape[1]:
        raise ParameterError(f"background has {bg.shape[1]} columns, features {x.shape[1]}")
    n, d = x.shape
    col = _positive_column(estimator)

    def log_odds(rows: np.ndarray) -> np.ndarray:
        p = np.clip(estimator.predict_proba(rows)[:, col], 1e-12, 1 - 1e-12)
        return np.log(p) - np.log1p(-p)

    half = max(1, (int(n_permutations) + 1) // 2)
    values = np.zeros((n, d))
    f_x = log_odds(x)
    base = float(log_odds(bg).mean())
    for i in range(n):
        perms = [rng.permutation(d) for _ in range(half)]
        perms += [p[::-1] for p in perms]
        # rows: for each ordering and background row, the chain background -> case, one feature at a time
        chain = np.empty((len(perms), bg.shape[0], d + 1, d))
        for k, perm in enumerate(perms):
            cur = bg.copy()
            chain[k, :, 0] = cur
            for step, j in enumerate(perm, start=1):
                cur[:, j] = x[i, j]
                chain[k, :, step] = cur
        f = log_odds(chain.reshape(-1, d)).reshape(len(perms), bg.shape[0], d + 1)
        deltas = np.diff(f, axis=2).mean(axis=1)  # (orderings, d): mean over the background rows
        for k, perm in enumerate(perms):
            values[i, perm] += deltas[k]
        values[i] /= len(perms)
    return Contributions(values, base, names, f_x)
