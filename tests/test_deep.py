"""CNN classifiers (medimg.ml.deep): known answers on synthetic images.

A seed reproduces a training run exactly; save/load gives identical predictions; transfer
learning from a model the test pretrains itself beats training from scratch on a small set; an
LSTM over per-time-point embeddings learns a temporal rule no single time point carries; the
validation split never shares a patient with training; augmentation transforms are exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from medimg import Image, io  # noqa: E402
from medimg.errors import FileFormatError, ParameterError, UnknownNameError  # noqa: E402
from medimg.evaluation.classification import roc_auc  # noqa: E402
from medimg.ml.deep import (  # noqa: E402
    CNNConfig,
    load_model,
    predict_proba,
    prepare_cases,
    read_case_table,
    train_classifier,
)
from medimg.ml.deep.data import split_by_patient  # noqa: E402

_QUIET = {"rotate_deg": 0.0, "noise_std": 0.0, "intensity_shift": 0.0, "intensity_scale": 0.0}


def blobs(n: int, rng: np.random.Generator, *, size: int = 24, radius: float = 2.5, amp: float = 1.5,
          centre: tuple[float, float] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Noise images; class 1 (every other image) has a bright disc (at ``centre`` or anywhere)."""
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    for i in range(n):
        img = rng.normal(0.0, 1.0, (size, size))
        if i % 2:
            cy, cx = centre if centre is not None else rng.uniform(5, size - 5, 2)
            img += amp * (((yy - cy) ** 2 + (xx - cx) ** 2) <= radius**2)
        images.append(img.astype(np.float32))
        labels.append(i % 2)
    return images, np.array(labels)


def test_same_seed_gives_identical_weights_and_metrics_and_another_seed_does_not() -> None:
    images, labels = blobs(24, np.random.default_rng(0), size=16)
    groups = np.repeat(np.arange(12), 2)
    cfg = CNNConfig(image_size=(16, 16), epochs=3, batch_size=8, rotate90=True, elastic_voxels=1.0, bias_field=0.3)
    runs = [train_classifier(images, labels, groups=groups, config=cfg, seed=s) for s in (3, 3, 4)]
    a, b, c = (r.model.network.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].history == runs[1].history
    assert runs[0].metrics == runs[1].metrics
    assert not all(torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
    # the split held out whole patients
    assert runs[0].model.info["n_validation"] > 0
    val_patients = set(runs[0].model.info["validation_patients"])
    assert val_patients and val_patients < set(map(str, groups))


def test_patient_split_never_shares_a_patient_and_keeps_both_classes() -> None:
    rng = np.random.default_rng(1)
    groups = np.repeat([f"p{i}" for i in range(30)], 3)  # three lesions / time points per patient
    labels = np.repeat(rng.integers(0, 2, 30), 3)
    train, val = split_by_patient(labels, groups, 0.25, rng)
    assert not set(groups[train]) & set(groups[val])
    assert np.union1d(train, val).size == labels.size
    assert set(labels[val]) == {0, 1}
    # a patient on both sides of a given validation set is refused
    images, y = blobs(8, rng, size=16)
    cfg = CNNConfig(image_size=(16, 16), epochs=1)
    data = prepare_cases(images, cfg, labels=y, groups=["a", "a", "b", "b", "c", "c", "d", "d"])
    with pytest.raises(ParameterError, match="both training and validation"):
        train_classifier(data.subset([0, 2, 3, 4, 5, 6]), config=cfg, validation=data.subset([1, 7]))


def test_save_and_load_give_identical_predictions_and_keep_config_hashes_metrics(tmp_path: Path) -> None:
    images, labels = blobs(20, np.random.default_rng(2), size=16)
    cfg = CNNConfig(architecture="densenet_tiny", image_size=(16, 16), epochs=2)
    result = train_classifier(images, labels, config=cfg, seed=0, checkpoint_path=tmp_path / "m.pt")
    loaded = load_model(result.checkpoint)
    assert loaded.config == cfg
    assert loaded.info["data_sha256"]["train"] == result.model.info["data_sha256"]["train"]
    assert loaded.info["metrics"] == pytest.approx(result.metrics)
    assert "torch" in loaded.info["software"] and "monai" in loaded.info["software"]
    new = blobs(10, np.random.default_rng(3), size=16)[0]
    p0, p1 = predict_proba(result.model, new), loaded.predict_proba(new)
    np.testing.assert_array_equal(p0, p1)
    np.testing.assert_allclose(p0.sum(1), 1.0, atol=1e-6)
    (tmp_path / "bad.pt").write_bytes(b"not torch")
    with pytest.raises(FileFormatError):
        load_model(tmp_path / "bad.pt")
    with pytest.raises(ParameterError, match="local file"):
        load_model("https://example.org/model.pt")


def test_transfer_learning_from_a_related_task_beats_training_from_scratch(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    source_x, source_y = blobs(240, rng, amp=2.0)  # plenty of data: a bright disc anywhere
    base = {"architecture": "resnet_tiny", "image_size": (24, 24), "learning_rate": 3e-3, "val_fraction": 0.0,
            "rotate_deg": 0.0}
    train_classifier(source_x, source_y, config=CNNConfig(**base, epochs=6), seed=0, checkpoint_path=tmp_path / "source.pt")
    small_x, small_y = blobs(12, np.random.default_rng(100), amp=1.5, radius=2.0)  # the target: fainter, smaller
    test_x, test_y = blobs(200, rng, amp=1.5, radius=2.0)
    scratch = train_classifier(small_x, small_y, config=CNNConfig(**base, epochs=10), seed=0)
    tuned = train_classifier(small_x, small_y, seed=0, config=CNNConfig(
        **base, epochs=10, pretrained=str(tmp_path / "source.pt"), freeze_epochs=4, finetune_lr_factor=0.1))
    info = tuned.model.info["transfer"]
    assert info["loaded"] == info["n_tensors"]
    assert [h["phase"] for h in tuned.history] == ["frozen"] * 4 + ["finetune"] * 6
    assert tuned.history[4]["lr"] == pytest.approx(3e-4)
    auc_scratch = roc_auc(test_y.astype(bool), predict_proba(scratch.model, test_x)[:, 1])
    auc_tuned = roc_auc(test_y.astype(bool), predict_proba(tuned.model, test_x)[:, 1])
    assert auc_tuned > 0.9 and auc_tuned > auc_scratch + 0.15, (auc_scratch, auc_tuned)
    # a head of another shape (3 classes) is skipped; the backbone still loads
    three = CNNConfig(**base, epochs=1, n_classes=3, pretrained=str(tmp_path / "source.pt"))
    info3 = train_classifier(small_x, small_y, config=three, seed=0).model.info["transfer"]
    assert info3["skipped"] == 2 and info3["loaded"] == info["loaded"] - 2


_RADII = (2.0, 3.5, 5.0)


def _disc(radius: float, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (rng.normal(0, 0.3, (size, size)) + (((yy - 7.5) ** 2 + (xx - 7.5) ** 2) <= radius**2)).astype(np.float32)


def _changing(n: int, rng: np.random.Generator) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """Two time points; class 1: the lesion changed size, class 0: it did not. Each time point
    alone has the same (uniform) size distribution in both classes."""
    cases, labels = [], []
    for i in range(n):
        k0 = int(rng.integers(3))
        k1 = k0 if i % 2 == 0 else (k0 + int(rng.integers(1, 3))) % 3
        cases.append([_disc(_RADII[k0], rng), _disc(_RADII[k1], rng)])
        labels.append(i % 2)
    return cases, np.array(labels)


def test_lstm_learns_a_change_over_time_that_no_single_time_point_shows() -> None:
    rng = np.random.default_rng(0)
    train_x, train_y = _changing(160, rng)
    test_x, test_y = _changing(200, rng)
    base = {"architecture": "densenet_tiny", "image_size": (16, 16), "epochs": 30, "learning_rate": 1e-2,
            "dropout": 0.0, "patience": 50, **_QUIET}
    seq = train_classifier(train_x, train_y, config=CNNConfig(**base, sequence="lstm", hidden_size=16), seed=0)
    single = train_classifier([c[1] for c in train_x], train_y, config=CNNConfig(**base), seed=0)
    auc_seq = roc_auc(test_y.astype(bool), predict_proba(seq.model, test_x)[:, 1])
    auc_single = roc_auc(test_y.astype(bool), predict_proba(single.model, [c[1] for c in test_x])[:, 1])
    assert auc_seq > 0.75 and auc_single < 0.65, (auc_seq, auc_single)
    # sequences of different lengths go through one batch (packed)
    probs = predict_proba(seq.model, [test_x[0], test_x[1][:1], [*test_x[2], test_x[3][0]]])
    assert probs.shape == (3, 2) and np.all(np.isfinite(probs))


@pytest.mark.parametrize("architecture", ["resnet_tiny", "densenet_tiny", "efficientnet_tiny"])
def test_every_architecture_trains_in_3d_on_volumes(architecture: str) -> None:
    rng = np.random.default_rng(5)
    zz, yy, xx = np.mgrid[:12, :12, :12]
    vols, labels = [], []
    for i in range(12):
        v = rng.normal(0, 1, (12, 12, 12)) + 3.0 * (i % 2) * (((zz - 6) ** 2 + (yy - 6) ** 2 + (xx - 6) ** 2) <= 9)
        vols.append(Image(v.astype(np.float32), np.diag([0.8, 0.8, 2.0, 1.0])))
        labels.append(i % 2)
    size = (16, 16, 16) if architecture.startswith("densenet") else (8, 8, 8)
    cfg = CNNConfig(architecture=architecture, spatial_dims=3, image_size=size, epochs=2, val_fraction=0.25)
    result = train_classifier(vols, labels, config=cfg, seed=0)
    assert predict_proba(result.model, vols[:3]).shape == (3, 2)
    assert result.images_per_second > 0 and result.epochs == 2


def test_case_table_of_nifti_files_and_sequences(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    images, labels = blobs(6, rng, size=16)
    rows = ["path,label,patient,visit"]
    for i, img in enumerate(images):
        io.write(Image(img[None], np.eye(4)), tmp_path / f"c{i}.nii.gz", sidecar=False)
        rows.append(f"c{i}.nii.gz,{labels[i]},p{i // 2},{1 - i % 2}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    cases, y, groups, ids, _ = read_case_table(tmp_path / "cases.csv", image_column="path", patient_column="patient")
    assert len(cases) == 6 and list(y) == list(labels) and list(groups) == ["p0", "p0", "p1", "p1", "p2", "p2"]
    cfg = CNNConfig(image_size=(16, 16))
    np.testing.assert_allclose(prepare_cases(cases, cfg).inputs[1][0], prepare_cases([images[1]], cfg).inputs[0][0], atol=1e-5)
    with pytest.raises(ParameterError, match="several labels"):  # patients mix labels across visits
        read_case_table(tmp_path / "cases.csv", image_column="path", patient_column="patient", time_column="visit")
    with pytest.raises(ParameterError, match="did you mean 'patient'"):
        read_case_table(tmp_path / "cases.csv", image_column="path", patient_column="patients")


def test_augmentation_transforms_are_exact_where_an_exact_answer_exists() -> None:
    from medimg.ml.deep.augment import apply_params, sample_params

    x = torch.randn(3, 1, 10, 10)
    params = sample_params(np.random.default_rng(0), 3, CNNConfig(image_size=(10, 10), **_QUIET, flip=False), (10, 10))
    assert torch.equal(apply_params(x, params), x)  # everything off: identity
    params = dict(params, angle_rad=np.full(3, np.pi / 2))  # a 90 degree rotation by resampling ...
    turned = apply_params(x, params)
    exact = torch.rot90(x, 1, dims=(2, 3))  # ... equals the quarter turn (one direction or the other)
    other = torch.rot90(x, -1, dims=(2, 3))
    assert min(float((turned - exact).abs().max()), float((turned - other).abs().max())) < 1e-5
    from monai.transforms import Rotate

    y = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 1, 24, 32)).astype(np.float32))
    cfg = CNNConfig(image_size=(24, 32), **_QUIET, flip=False)
    one = dict(sample_params(np.random.default_rng(0), 1, cfg, (24, 32)), angle_rad=np.array([0.3]))
    monai = Rotate(angle=0.3, keep_size=True, mode="bilinear", padding_mode="border", align_corners=False)(y[0])
    np.testing.assert_allclose(apply_params(y, one)[0].numpy(), np.asarray(monai), atol=1e-4)  # non-square too
    params = dict(params, angle_rad=np.zeros(3), flip=np.array([[True, False]] * 3))
    assert torch.equal(apply_params(x, params), torch.flip(x, dims=[2]))
    params = dict(params, flip=np.zeros((3, 2), bool), scale=np.array([2.0, 1.0, 1.0]), shift=np.array([1.0, 0.0, 0.0]))
    assert torch.allclose(apply_params(x, params)[0], 2 * x[0] + 1)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'resnet18'"):
        CNNConfig(architecture="resnet81")
    with pytest.raises(ParameterError, match="pretrained"):
        CNNConfig(freeze_epochs=2)
    with pytest.raises(ParameterError, match="at least 16 voxels"):
        CNNConfig(architecture="densenet_tiny", image_size=(8, 8))
    with pytest.raises(ParameterError, match="image_size must have 3"):
        CNNConfig(spatial_dims=3)
    with pytest.raises(ParameterError, match="did you mean 'epochs'"):
        CNNConfig.from_dict({"epocs": 3})
    assert CNNConfig.from_dict(CNNConfig(image_size=(20, 20)).to_dict()) == CNNConfig(image_size=(20, 20))


def _write_cases(folder: Path, n: int, seed: int) -> Path:
    images, labels = blobs(n, np.random.default_rng(seed), size=16, amp=2.5)
    rows = ["image,label,patient"]
    for i, img in enumerate(images):
        io.write(Image(img, np.diag([0.7, 0.7, 1.0, 1.0])), folder / f"img{i:02d}.nii.gz", sidecar=False)
        rows.append(f"img{i:02d}.nii.gz,{labels[i]},pat{i // 2}")
    (folder / "cases.csv").write_text("\n".join(rows) + "\n")
    return folder / "cases.csv"


def test_cli_train_writes_model_metrics_predictions_overlays_and_predict_reads_it_back(tmp_path: Path, capsys) -> None:
    import json

    import pandas as pd

    from medimg.cli.main import main

    _write_cases(tmp_path, 24, 0)
    (tmp_path / "train.yaml").write_text(
        "data:\n  table: cases.csv\n  patient_column: patient\n"
        "model:\n  architecture: resnet_tiny\n  image_size: [16, 16]\n  epochs: 3\n  learning_rate: 0.003\n"
        "seed: 1\nexplain:\n  cases: 2\n")
    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "train.yaml"), "--check"]) == 0
    assert "valid; resnet_tiny" in capsys.readouterr().out
    assert main(["train", str(tmp_path / "train.yaml"), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    for name in ("model.pt", "metrics.json", "history.csv", "validation_predictions.csv", "manifest.json"):
        assert (out / name).is_file(), name
    assert len(list((out / "explain").glob("*.png"))) == 4
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seed"] == 1 and metrics["epochs_run"] == 3 and len(metrics["data_sha256"]["train"]) == 64
    val = pd.read_csv(out / "validation_predictions.csv")
    assert {"case", "patient", "y_true", "y_score", "y_pred"} <= set(val.columns)
    train_patients = set(pd.read_csv(tmp_path / "cases.csv").patient) - set(val.patient)
    assert train_patients and not train_patients & set(val.patient)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {r["role"] for r in manifest["inputs"]} == {"train config", "case table"}
    # predict: the same probabilities as the model gives in Python
    assert main(["predict", str(out / "model.pt"), str(tmp_path / "cases.csv"), "-o", str(tmp_path / "p.csv"),
                 "--label-column", "label"]) == 0
    pred = pd.read_csv(tmp_path / "p.csv")
    merged = val.merge(pred, on="case", suffixes=("", "_again"))
    np.testing.assert_allclose(merged.y_score, merged.y_score_again, rtol=1e-6)
    assert main(["evaluate", str(tmp_path / "p.csv"), "--bootstrap", "50"]) == 0  # the CSV feeds `medimg evaluate`
    # explain: a map on the image's grid with its sidecar, and an overlay
    assert main(["explain", str(out / "model.pt"), str(tmp_path / "img01.nii.gz"), "-o", str(tmp_path / "occ.nii.gz"),
                 "--patch-mm", "3", "--png", str(tmp_path / "occ.png")]) == 0
    heat, source = io.read(tmp_path / "occ.nii.gz"), io.read(tmp_path / "img01.nii.gz")
    assert heat.shape == source.shape and np.allclose(heat.affine, source.affine)
    assert (tmp_path / "occ.json").is_file() and (tmp_path / "occ.png").stat().st_size > 1000
    assert main(["explain", str(out / "model.pt"), str(tmp_path / "img01.nii.gz"), "-o", str(tmp_path / "g.nii.gz"),
                 "--method", "gradcam"]) == 2
    assert "did you mean 'grad-cam'" in capsys.readouterr().err


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("data:\n  table: cases.csv\nmodel:\n  architecure: resnet_tiny\n", "did you mean 'architecture'"),
    ("data:\n  table: cases.csv\nmodel:\n  epochs: ten\n", "model.epochs"),
    ("data:\n  table: cases.csv\nmodel:\n  architecture: resnet99\n", "unknown architecture 'resnet99'"),
    ("data:\n  tabel: cases.csv\n", "data.tabel: unknown key"),
    ("data:\n  table: cases.csv\nmodel:\n  pretrained: missing.pt\n", "no such weights file"),
    ("data:\n  table: cases.csv\n  patient_column: patients\nmodel:\n  image_size: [16, 16]\n", "did you mean 'patient'"),
    ("data:\n  table: missing.csv\n", "data.table: no such file"),
])
def test_cli_train_bad_config_is_one_line_and_exit_2(tmp_path: Path, capsys, yaml_text: str, message: str) -> None:
    from medimg.cli.main import main

    _write_cases(tmp_path, 4, 0)
    (tmp_path / "t.yaml").write_text(yaml_text)
    assert main(["train", str(tmp_path / "t.yaml"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_a_plain_monai_state_dict_and_a_cnn_checkpoint_initialise_other_models(tmp_path: Path) -> None:
    from medimg.core.progress import reporting
    from medimg.ml.deep.networks import build_network

    images, labels = blobs(12, np.random.default_rng(7), size=16)
    cfg = CNNConfig(image_size=(16, 16), epochs=2, val_fraction=0.0)
    calls: list[tuple[int, int | None, str]] = []
    with reporting(lambda done, total, what: calls.append((done, total, what))):
        single = train_classifier(images, labels, config=cfg, seed=0, checkpoint_path=tmp_path / "cnn.pt")
    assert calls[-1] == (2, 2, "training")
    # the backbone's own (MONAI) state dict, as another tool would save it
    torch.save(single.model.network.backbone.state_dict(), tmp_path / "monai_resnet.pt")
    net = build_network(CNNConfig(image_size=(16, 16)))
    from medimg.ml.deep.model import load_weights

    info = load_weights(net, tmp_path / "monai_resnet.pt")
    assert info["loaded"] == len(single.model.network.backbone.state_dict()) and info["skipped"] == 0
    state = single.model.network.backbone.state_dict()
    assert all(torch.equal(net.backbone.state_dict()[k], state[k]) for k in state)
    # a sequence model starts from the single-image CNN: the encoder loads, the LSTM/head do not exist there
    seq_cfg = CNNConfig(image_size=(16, 16), epochs=2, val_fraction=0.0, sequence="gru", hidden_size=8,
                        pretrained=str(tmp_path / "cnn.pt"), freeze_epochs=1)
    seq = train_classifier([[a, b] for a, b in zip(images[::2], images[1::2], strict=True)], np.arange(6) % 2,
                           config=seq_cfg, seed=0)
    transfer = seq.model.info["transfer"]
    assert transfer["loaded"] == len(state) and transfer["skipped"] == 2  # the image head (weight, bias)
    with pytest.raises(FileFormatError, match="no tensor matches"):
        load_weights(build_network(CNNConfig(architecture="densenet_tiny", image_size=(16, 16))), tmp_path / "monai_resnet.pt")


def test_sequence_table_orders_each_case_by_time(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    rows = ["path,label,patient,visit"]
    for p in range(3):
        for visit in (2, 0, 1):  # written out of order
            img = np.full((16, 16), float(10 * p + visit), dtype=np.float32)
            io.write(Image(img + rng.normal(0, 0.01, img.shape).astype(np.float32)), tmp_path / f"p{p}v{visit}.nii.gz",
                     sidecar=False)
            rows.append(f"p{p}v{visit}.nii.gz,{p % 2},p{p},{visit}")
    (tmp_path / "seq.csv").write_text("\n".join(rows) + "\n")
    cases, y, groups, ids, _ = read_case_table(tmp_path / "seq.csv", image_column="path", patient_column="patient",
                                               time_column="visit")
    assert ids == ["p0", "p1", "p2"] and list(y) == [0, 1, 0] and list(groups) == ids
    for p, case in enumerate(cases):
        assert [round(float(np.mean(img.array))) for img in case] == [10 * p, 10 * p + 1, 10 * p + 2]


@pytest.mark.parametrize("architecture", ["resnet10", "resnet18", "resnet34", "densenet121", "efficientnet-b0"])
def test_published_sizes_build_and_classify_in_2d(architecture: str) -> None:
    from medimg.ml.deep.config import MIN_SIZE
    from medimg.ml.deep.networks import build_network, cam_layer_name

    size = MIN_SIZE[architecture]
    cfg = CNNConfig(architecture=architecture, image_size=(size, size))
    net = build_network(cfg).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, size, size))
        emb = net.embed(torch.randn(2, 1, size, size))
    assert out.shape == (2, 2) and emb.shape == (2, net.width)
    assert cam_layer_name(cfg) in dict(net.named_modules())


def test_two_channel_images_from_two_table_columns_learn_what_only_the_second_channel_shows(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    first, _ = blobs(60, rng, size=16, amp=0.0)  # channel 0: noise only
    second, labels = blobs(60, rng, size=16, amp=2.5, centre=(8.0, 8.0))  # channel 1: the disc decides the class
    rows = ["pet,ct,label,patient"]
    for i in range(60):
        for name, arr in (("pet", second[i]), ("ct", first[i])):
            io.write(Image(arr, np.diag([0.8, 0.8, 1.0, 1.0])), tmp_path / f"{name}{i}.nii.gz", sidecar=False)
        rows.append(f"pet{i}.nii.gz,ct{i}.nii.gz,{labels[i]},p{i}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    cases, y, groups, _, _ = read_case_table(tmp_path / "cases.csv", image_column=["ct", "pet"], patient_column="patient")
    assert cases[0].channel_axis == -1 and cases[0].shape == (16, 16, 2)
    np.testing.assert_allclose(cases[3].array[..., 1], second[3], atol=1e-6)
    base = {"image_size": (16, 16), "epochs": 10, "learning_rate": 3e-3, "val_fraction": 0.0, "rotate_deg": 0.0}
    both = train_classifier(cases[:40], y[:40], config=CNNConfig(**base, in_channels=2), seed=0)
    ct_only = train_classifier([c.array[..., 0] for c in cases[:40]], y[:40], config=CNNConfig(**base), seed=0)
    auc_both = roc_auc(y[40:].astype(bool), predict_proba(both.model, cases[40:])[:, 1])
    auc_ct = roc_auc(y[40:].astype(bool), predict_proba(ct_only.model, [c.array[..., 0] for c in cases[40:]])[:, 1])
    assert auc_both > 0.9 and auc_ct < 0.75, (auc_both, auc_ct)
    with pytest.raises(ParameterError, match="takes 2 channel"):
        predict_proba(both.model, [c.array[..., 0] for c in cases[40:42]])
    from medimg.ml.explain import occlusion_sensitivity

    occ = occlusion_sensitivity(both.model, cases[41], patch_mm=3.0)
    assert occ.shape == (16, 16) and np.allclose(occ.affine, cases[41].affine)
