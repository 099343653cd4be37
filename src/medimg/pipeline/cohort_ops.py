"""The cohort operations a study may run (see :mod:`medimg.pipeline.cohort`).

Each is a thin adapter: tables in, the library's function, files out. Models come from
:mod:`medimg.ml`, statistics from :mod:`medimg.evaluation`.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np
import pydantic

from medimg.errors import ParameterError
from medimg.pipeline.cohort import CohortContext, CohortOp, CohortOutput, cohort_op


class _Params(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


def feature_matrix(frame: Any, context: CohortContext) -> tuple[np.ndarray, list[str]]:
    """The numeric feature columns of a per-case table (the case's own columns left out) as a
    float matrix (rows = cases) and their names; columns that are constant or never finite are
    dropped."""
    names = [c for c in frame.columns if c not in context.case_columns
             and np.issubdtype(frame[c].dtype, np.number)]
    if not names:
        raise ParameterError("the table has no numeric feature columns")
    x = frame[names].to_numpy(dtype=np.float64)
    keep = [j for j in range(x.shape[1]) if np.isfinite(x[:, j]).any() and np.nanstd(x[:, j]) > 0]
    return x[:, keep], [names[j] for j in keep]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    return buf.getvalue()


# ------------------------------------------------------------------------------ embedding
def embed(x: np.ndarray, *, method: str, y: np.ndarray | None = None, seed: int = 0,
          perplexity: float = 10.0) -> tuple[np.ndarray, np.ndarray | None]:
    """Two-dimensional embedding of the rows of ``x`` (missing values imputed by the column
    median, columns standardised): ``pca`` (with the explained variance ratios), ``tsne`` or
    ``lda`` (supervised by ``y``; one component when there are two classes, plotted against the
    first principal component)."""
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    z = StandardScaler().fit_transform(SimpleImputer(strategy="median").fit_transform(x))
    if method == "pca":
        pca = PCA(n_components=2, random_state=seed).fit(z)
        return pca.transform(z), pca.explained_variance_ratio_
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(perplexity, max(1.0, (len(z) - 1) / 3))
        return TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(z), None
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    if y is None:
        raise ParameterError("lda needs labels")
    n_classes = len(np.unique(y))
    lda = LinearDiscriminantAnalysis(n_components=min(2, n_classes - 1)).fit(z, y)
    coords = lda.transform(z)
    if coords.shape[1] == 1:
        coords = np.column_stack([coords[:, 0], PCA(n_components=1, random_state=seed).fit_transform(z)[:, 0]])
    return coords, None


def embedding_png(coords: np.ndarray, labels: np.ndarray | None, *, method: str, explained: np.ndarray | None,
                  title: str) -> bytes:
    """A scatter plot of an embedding, one colour per label value."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    groups = np.asarray(labels) if labels is not None else np.array(["all"] * len(coords))
    for g in sorted(set(groups.tolist())):
        sel = groups == g
        ax.scatter(coords[sel, 0], coords[sel, 1], s=16, alpha=0.8, label=str(g))
    axis = {"pca": "PC", "tsne": "t-SNE ", "lda": "LD"}[method]
    xl, yl = f"{axis}1", f"{axis}2"
    if explained is not None:
        xl += f" ({100 * explained[0]:.0f} %)"
        yl += f" ({100 * explained[1]:.0f} %)"
    if method == "lda" and coords.shape[1] == 2:
        yl = "PC1"
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_title(title, fontsize=9)
    if labels is not None:
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


class EmbeddingParams(_Params):
    """``method``: pca, tsne or lda (lda needs the label); ``color_by``: a case column (default:
    the label, else the first subgroup column); ``perplexity`` for t-SNE; ``seed``."""

    method: Literal["pca", "tsne", "lda"] = "pca"
    color_by: str | None = None
    perplexity: float = pydantic.Field(default=10.0, gt=0)
    seed: int = 0


def _embedding(context: CohortContext, params: dict[str, Any]) -> CohortOutput:
    frame = context.inputs["table"]
    x, names = feature_matrix(frame, context)
    color_by = params["color_by"] or context.label_column or (context.subgroup_columns or [None])[0]
    if color_by is not None and color_by not in frame.columns:
        raise ParameterError(f"color_by: no column {color_by!r} in the table")
    labels = frame[color_by].astype(str).to_numpy() if color_by else None
    if params["method"] == "lda":
        if not context.label_column:
            raise ParameterError("method lda needs the study's label_column")
        y = frame[context.label_column].to_numpy()
    else:
        y = None
    coords, explained = embed(x, method=params["method"], y=y, seed=params["seed"], perplexity=params["perplexity"])
    png = embedding_png(coords, labels, method=params["method"], explained=explained,
                        title=f"{params['method'].upper()} of {len(names)} features, {len(frame)} cases"
                              + (f", coloured by {color_by}" if color_by else ""))
    out = CohortOutput()
    key = context.write(f"{params['method']}.png", png)
    out.figures.append({"path": key, "caption": f"{params['method'].upper()} embedding of the standardised "
                                                f"features" + (f" coloured by {color_by}" if color_by else "")})
    table = frame[list(context.case_columns)].copy()
    table["dim1"], table["dim2"] = coords[:, 0], coords[:, 1]
    out.table = table
    if explained is not None:
        out.metrics = {f"explained_variance_dim{k + 1}": {"value": float(v), "ci": None}
                       for k, v in enumerate(explained)}
    return out


@cohort_op("embedding")
def _embedding_op() -> CohortOp:
    return CohortOp("embedding", ("table",), "table", EmbeddingParams, _embedding,
                    summary="PCA, t-SNE or LDA of a feature table, plotted by label or subgroup",
                    input_kinds={"table": ("table",)})


# ------------------------------------------------------------------------------ evaluate / audit
def _file_png(write: Any, name: str, draw: Any) -> str:
    """Run ``draw(path)`` (a plot function that writes a PNG) into a temporary file; store it."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        draw(path)
        return write(name, path.read_bytes())


def _prediction_columns(frame: Any) -> None:
    missing = [c for c in ("y_true", "y_score") if c not in frame.columns]
    if missing:
        raise ParameterError(f"the predictions table has no column {', '.join(missing)} (a model step gives them)")


def _finite(v: Any) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


class EvaluateParams(_Params):
    """Bootstrap resamples and method, confidence level, decision threshold, seed."""

    n_bootstrap: int = pydantic.Field(default=2000, ge=0)
    method: Literal["percentile", "bca"] = "percentile"
    ci: float = pydantic.Field(default=0.95, gt=0, lt=1)
    threshold: float | None = None  # default: the model's y_pred, else 0.5
    seed: int = 0


def _evaluate(context: CohortContext, params: dict[str, Any]) -> CohortOutput:
    from medimg.evaluation.classification import binary_metrics
    from medimg.evaluation.delong import delong_auc
    from medimg.evaluation.plots import plot_calibration, plot_confusion, plot_pr, plot_roc

    frame = context.inputs["predictions"]
    _prediction_columns(frame)
    y, score = frame["y_true"].to_numpy(), frame["y_score"].to_numpy(dtype=float)
    y_pred = frame["y_pred"].to_numpy() if "y_pred" in frame.columns and params["threshold"] is None else None
    cluster = frame[context.group_column].astype(str).to_numpy() if context.group_column in frame.columns else None
    result = binary_metrics(y, score, y_pred, threshold=params["threshold"] if params["threshold"] is not None else 0.5,
                            cluster=cluster, n_bootstrap=params["n_bootstrap"], ci=params["ci"],
                            method=params["method"], seed=params["seed"])
    out = CohortOutput()
    for name, m in result.items():
        lo, hi = m.ci
        out.metrics[name] = {"value": _finite(m.value),
                             "ci": [_finite(lo), _finite(hi)] if np.isfinite(lo) and np.isfinite(hi) else None}
    dl = delong_auc(y, score, confidence=params["ci"])
    out.metrics["auc_delong"] = {"value": _finite(dl.auc), "ci": [_finite(dl.ci[0]), _finite(dl.ci[1])]}
    pred = y_pred if y_pred is not None else (score >= (params["threshold"] or 0.5)).astype(int)
    for name, draw, caption in (
        ("roc.png", lambda p: plot_roc(y, score, p), "Out-of-fold ROC curve"),
        ("pr.png", lambda p: plot_pr(y, score, p), "Precision-recall curve"),
        ("confusion.png", lambda p: plot_confusion(y, pred, p), "Confusion matrix at the decision threshold"),
    ):
        out.figures.append({"path": _file_png(context.write, name, draw), "caption": caption})
    if np.all((score >= 0) & (score <= 1)):
        out.figures.append({"path": _file_png(context.write, "calibration.png", lambda p: plot_calibration(y, score, p)),
                            "caption": "Reliability diagram (calibration)"})
    out.notes.append(f"{len(frame)} predictions ({int(np.sum(y))} positive); {params['method']} bootstrap with "
                     f"{params['n_bootstrap']} resamples" + (f", clustered by {context.group_column}" if cluster is not None
                                                              else "") + "; DeLong interval for the AUC.")
    import json

    context.write("metrics.json", json.dumps(out.metrics, indent=1).encode())
    return out


@cohort_op("evaluate")
def _evaluate_op() -> CohortOp:
    return CohortOp("evaluate", ("predictions",), "summary", EvaluateParams, _evaluate,
                    summary="classification metrics with bootstrap (and DeLong) confidence intervals, ROC/PR/"
                            "confusion/calibration plots", input_kinds={"predictions": ("predictions",)})


class AuditParams(_Params):
    """``by``: the subgroup columns (default: the study's subgroup_columns); the rest as
    :func:`medimg.evaluation.audit.subgroup_audit`."""

    by: list[str] | None = None
    n_bootstrap: int = pydantic.Field(default=2000, ge=0)
    ci: float = pydantic.Field(default=0.95, gt=0, lt=1)
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    seed: int = 0


def _audit(context: CohortContext, params: dict[str, Any]) -> CohortOutput:
    from medimg.evaluation.audit import subgroup_audit

    frame = context.inputs["predictions"]
    _prediction_columns(frame)
    by = params["by"] or context.subgroup_columns
    if not by:
        raise ParameterError("audit: name the subgroup columns (params.by or inputs.subgroup_columns)")
    for column in by:
        if column not in frame.columns:
            raise ParameterError(f"audit: no column {column!r} in the predictions")
    case_id = context.group_column if context.group_column in frame.columns else None
    result = subgroup_audit(frame, by, y_pred="y_pred" if "y_pred" in frame.columns else None, case_id=case_id,
                            n_bootstrap=params["n_bootstrap"], ci=params["ci"], correction=params["correction"],
                            seed=params["seed"])
    out = CohortOutput()
    buf = io.StringIO()
    result.group_table().to_csv(buf, index=False)
    out.tables.append({"path": context.write("groups.csv", buf.getvalue().encode()),
                       "caption": "Metrics per subgroup with their confidence intervals"})
    gaps = result.gap_table()
    buf = io.StringIO()
    gaps.to_csv(buf, index=False)
    out.tables.append({"path": context.write("gaps.csv", buf.getvalue().encode()),
                       "caption": f"Gaps between each group and the rest; flagged when the {params['correction']}-"
                                  "adjusted interval excludes 0"})
    if len(gaps):
        out.figures.append({"path": _file_png(context.write, "gaps.png", result.plot), "caption": "Subgroup gaps"})
    out.table = gaps
    flagged = result.flagged
    out.notes.append(f"{len(flagged)} of {len(gaps)} gaps flagged ({params['correction']} correction, "
                     f"{params['n_bootstrap']} resamples)." + ("" if not flagged else " Flagged: " + "; ".join(
                         f"{g['column']}={g['group']} {g['metric']} {g['gap']:+.3f}" for g in flagged)))
    import json

    context.write("audit.json", json.dumps(result.to_dict(), indent=1, default=str).encode())
    out.extra["n_flagged"] = len(flagged)
    return out


@cohort_op("audit")
def _audit_op() -> CohortOp:
    return CohortOp("audit", ("predictions",), "table", AuditParams, _audit,
                    summary="the metrics per subgroup and the gaps between groups, with corrected intervals",
                    input_kinds={"predictions": ("predictions",)})


# ------------------------------------------------------------------------------ model
class ModelParams(_Params):
    """As ``medimg model``: the classifier, class-imbalance handling, tuning (nested), feature
    selection, imputation (fitted inside the folds), folds, bootstrap resamples and seed; ``label``
    overrides the study's label_column, ``exclude`` names numeric columns that are not features."""

    model: str = "logistic"
    imbalance: Literal["none", "smote", "adasyn", "undersample", "weights"] = "none"
    tune: Literal["none", "grid", "random", "bayes"] = "none"
    select: list[Literal["variance", "correlation", "mrmr", "lasso"]] = []
    impute: Literal["none", "mean", "median", "knn"] = "median"
    folds: int = pydantic.Field(default=5, ge=2)
    inner_folds: int = pydantic.Field(default=3, ge=2)
    trials: int = pydantic.Field(default=20, ge=1)
    n_bootstrap: int = pydantic.Field(default=2000, ge=0)
    label: str | None = None
    exclude: list[str] = []
    seed: int = 0

    @pydantic.field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from medimg.ml.pipelines import resolve_model

        try:
            resolve_model(value)
        except ParameterError as err:
            raise ValueError(str(err)) from err
        return value


def _model(context: CohortContext, params: dict[str, Any]) -> CohortOutput:
    import json
    import tempfile
    from pathlib import Path

    from medimg.ml.study import model_study, split_table

    frame = context.inputs["table"]
    label = params["label"] or context.label_column
    if not label:
        raise ParameterError("model: the study names no label_column")
    keep = [c for c in context.case_columns if c in frame.columns and c not in ("case", label, context.group_column)]
    table = split_table(frame, label=label, group=context.group_column, case_id="case", keep=keep,
                        exclude=[c for c in params["exclude"] if c in frame.columns])
    out = CohortOutput()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        record = model_study(table, folder, model=params["model"], imbalance=params["imbalance"],
                             tune_method=params["tune"], selection=params["select"], impute=params["impute"],
                             folds=params["folds"], inner_folds=params["inner_folds"], n_trials=params["trials"],
                             seed=params["seed"], n_bootstrap=params["n_bootstrap"])
        import pandas as pd

        predictions = pd.read_csv(folder / "predictions.csv", dtype={"case": str})
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name != "predictions.csv":
                key = context.write(str(path.relative_to(folder)).replace("/", "__"), path.read_bytes())
                if path.name == "roc.png":
                    out.figures.append({"path": key, "caption": "Out-of-fold ROC curve, coloured by fold"})
    out.table = predictions
    for name, m in record["metrics"].items():
        ci = m.get("ci")
        out.metrics[name] = {"value": m.get("value"),
                             "ci": list(ci) if ci and all(v is not None for v in ci) else None}
    cv = record["cross_validation"]["settings"]
    out.notes.append(f"{len(frame)} cases, {table.features.shape[1]} features; {cv.get('model', params['model'])}, "
                     f"{params['folds']}-fold cross-validation grouped by {context.group_column or 'case'}"
                     + (f", nested {params['tune']} tuning" if params["tune"] != "none" else "")
                     + (f", {params['imbalance']} inside the training folds" if params["imbalance"] != "none" else "")
                     + "; the model refitted on all cases is stored beside this step's outputs.")
    if table.empty_columns:
        out.notes.append(f"{len(table.empty_columns)} feature column(s) without a value in any case left out: "
                         f"{', '.join(table.empty_columns[:8])}{' ...' if len(table.empty_columns) > 8 else ''}.")
    out.extra["best_params"] = json.loads(json.dumps(record["model"].get("best_params"), default=str))
    return out


@cohort_op("model")
def _model_op() -> CohortOp:
    return CohortOp("model", ("table",), "predictions", ModelParams, _model,
                    summary="a cross-validated classifier on a feature table (grouped, nested when tuning): out-of-"
                            "fold predictions", input_kinds={"table": ("table",)})


class CNNParams(_Params):
    """A CNN classifier (:mod:`medimg.ml.deep`) cross-validated over the cases' kept images:
    network, input size (voxels, array order), intensity window (None: z-score), training
    settings (``class_weight="balanced"``: a cost-sensitive loss for the minority class), folds
    (grouped by the study's group_column), seed, and how many cases get saliency maps (Grad-CAM,
    occlusion or both, from the model of the fold that held the case out) in the report."""

    architecture: str = "resnet_tiny"
    spatial_dims: Literal[2, 3] = 3
    image_size: list[int] = [16, 32, 32]
    intensity_window: list[float] | None = None
    epochs: int = pydantic.Field(default=15, ge=1)
    batch_size: int = pydantic.Field(default=8, ge=1)
    learning_rate: float = pydantic.Field(default=1e-3, gt=0)
    patience: int = pydantic.Field(default=5, ge=1)
    class_weight: Literal["none", "balanced"] = "balanced"
    folds: int = pydantic.Field(default=5, ge=2)
    n_saliency: int = pydantic.Field(default=4, ge=0)
    saliency: Literal["gradcam", "occlusion", "both"] = "both"
    label: str | None = None
    seed: int = 0

    @pydantic.model_validator(mode="after")
    def _valid_config(self) -> CNNParams:
        try:
            self.config()
        except ParameterError as err:
            raise ValueError(str(err)) from err
        return self

    def config(self) -> Any:
        from medimg.ml.deep.config import CNNConfig

        return CNNConfig(architecture=self.architecture, spatial_dims=self.spatial_dims,
                         image_size=tuple(self.image_size),
                         intensity_window=tuple(self.intensity_window) if self.intensity_window else None,
                         epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                         patience=self.patience, class_weight=self.class_weight)


def _cnn(context: CohortContext, params: dict[str, Any]) -> CohortOutput:
    import tempfile
    from pathlib import Path

    import pandas as pd
    from sklearn.model_selection import StratifiedGroupKFold

    from medimg.ml.deep import predict_proba, train_classifier
    from medimg.ml.explain import grad_cam, occlusion_sensitivity, save_overlay

    frame = context.inputs["images"].reset_index(drop=True)
    label = params["label"] or context.label_column
    if not label or label not in frame.columns:
        raise ParameterError(f"cnn: no label column {label!r} among the case columns")
    config = CNNParams(**params).config()
    y = frame[label].to_numpy().astype(int)
    groups = frame[context.group_column].astype(str).to_numpy() if context.group_column in frame.columns \
        else frame["case"].astype(str).to_numpy()
    n_groups = len(set(groups))
    folds = min(params["folds"], n_groups, int(np.bincount(y).min()) if y.size else 0)
    if folds < 2:
        raise ParameterError(f"cnn: {len(frame)} cases of {n_groups} patients cannot make 2 folds with both classes")
    images = [context.read_image(k) for k in frame["key"]]
    scores = np.full(len(frame), np.nan)
    fold_of = np.full(len(frame), -1)
    models: dict[int, Any] = {}
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=params["seed"])
    for fold, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        result = train_classifier([images[i] for i in train], y[train], groups=groups[train], config=config,
                                  seed=params["seed"] + fold)
        scores[test] = predict_proba(result.model, [images[i] for i in test])[:, 1]
        fold_of[test] = fold
        models[fold] = result.model
    keep = [c for c in frame.columns if c not in ("key", "sha256")]
    table = frame[keep].copy()
    table["y_true"], table["y_score"], table["fold"] = y, scores, fold_of
    out = CohortOutput(table=table)
    # saliency: the most confident true positives first, then the most confident true negative
    order = [int(i) for i in np.argsort(-scores) if y[i] == 1][: max(params["n_saliency"] - 1, 0)]
    negatives = [int(i) for i in np.argsort(scores) if y[i] == 0]
    if params["n_saliency"] and negatives:
        order.append(negatives[0])
    with tempfile.TemporaryDirectory() as tmp:
        methods = {"gradcam": ("Grad-CAM", grad_cam), "occlusion": ("Occlusion", occlusion_sensitivity)}
        chosen = list(methods) if params["saliency"] == "both" else [params["saliency"]]
        for i in order[: params["n_saliency"]]:
            case = str(frame.loc[i, "case"])
            safe = pd.Series([case]).str.replace(r"[^A-Za-z0-9_.-]", "_", regex=True)[0]
            shown = images[i]
            if params["intensity_window"]:  # the grey image in the network's window
                low, high = params["intensity_window"]
                shown = shown.with_array(np.clip(shown.array.astype(np.float32), low, high))
            for method in chosen:
                title, explain = methods[method]
                if method == "occlusion":  # a fifth of the field of view, half-overlapping: ~10^3 network calls
                    fov_mm = min(n * sp for n, sp in zip(images[i].spatial_shape[::-1], images[i].spacing, strict=False))
                    heat = explain(models[int(fold_of[i])], images[i], patch_mm=fov_mm / 5, stride_mm=fov_mm / 10)
                else:
                    heat = explain(models[int(fold_of[i])], images[i])
                name = f"saliency_{method}_{safe}.png"
                path = save_overlay(shown, heat, Path(tmp) / name, alpha=0.35,
                                    title=f"{case} {title}: class {y[i]}, score {scores[i]:.2f}")
                key = context.write(name, Path(path).read_bytes())
                what = ("the probability drop when a patch is hidden" if method == "occlusion"
                        else "gradient-weighted last-stage activations")
                out.figures.append({"path": key, "caption": f"{title} saliency of case {case} (true class {y[i]}, "
                                                            f"out-of-fold score {scores[i]:.2f}; {what}) from the model "
                                                            f"of the fold that held it out, on the slice where it is "
                                                            f"largest"})
    from medimg.evaluation.classification import binary_metrics

    auc = binary_metrics(y, scores, None, n_bootstrap=1000, seed=params["seed"],
                         cluster=groups if context.group_column in frame.columns else None)["auc"]
    out.metrics["auc"] = {"value": _finite(auc.value),
                          "ci": [_finite(auc.ci[0]), _finite(auc.ci[1])] if np.all(np.isfinite(auc.ci)) else None}
    out.notes.append(f"{len(frame)} cases ({int(y.sum())} positive), {config.architecture} {config.spatial_dims}-D "
                     f"on {tuple(config.image_size)} voxels, {folds}-fold cross-validation grouped by "
                     f"{context.group_column or 'case'}; each fold's training cases hold out "
                     f"{config.val_fraction:.0%} of their patients for early stopping.")
    return out


@cohort_op("cnn")
def _cnn_op() -> CohortOp:
    return CohortOp("cnn", ("images",), "predictions", CNNParams, _cnn,
                    summary="a CNN classifier cross-validated on the kept images of a case step (grouped by "
                            "patient): out-of-fold predictions and Grad-CAM saliency maps",
                    input_kinds={"images": ("images",)})
