"""The tumor-type CNN: architecture, probabilities, calibration, resume, shipped model, CLI errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spinetumor.classification import CLASSES, CROP, PATCH  # noqa: E402
from spinetumor.classification.calibration import (combine_slices, ece, fit_temperature, nll,  # noqa: E402
                                                   tumor_log_probs)
from spinetumor.classification.dataset import (CANAL_BIT, CORD_BIT, TEST_SEED0, TUMOR_BIT,  # noqa: E402
                                               phantom_anatomy_masks, samples_from_cases, tumor_patches)
from spinetumor.classification.model import DEFAULT_WEIGHTS, ModelError, export_model, load_model  # noqa: E402
from spinetumor.classification.network import CNNConfig, build_cnn, count_layers  # noqa: E402

SHIPPED = DEFAULT_WEIGHTS.exists()


@pytest.mark.parametrize("channels", [2, 4])
def test_network_has_the_papers_layers_and_three_outputs(channels):
    net = build_cnn(CNNConfig(in_channels=channels))
    assert count_layers(net) == {"conv": 6, "maxpool": 4, "dense": 2}
    net.eval()
    with torch.no_grad():
        out = net(torch.zeros(5, channels, PATCH, PATCH))
    assert out.shape == (5, len(CLASSES))
    size_mb = sum(p.numel() for p in net.parameters()) * 4 / 1e6
    assert size_mb < 10


def test_combined_probabilities_sum_to_one_and_weight_slices_by_area():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 3))
    for t in (0.5, 1.0, 2.0):
        p = np.exp(combine_slices(logits, np.array([1.0, 2.0, 3.0, 4.0]), t))
        assert p.sum() == pytest.approx(1.0)
    # a slice with all the area decides alone; a zero-area slice changes nothing
    one = np.exp(combine_slices(np.array([[5.0, 0, 0], [0, 0, 5.0]]), np.array([1.0, 0.0])))
    assert one.argmax() == 0 and one == pytest.approx(np.exp(combine_slices(np.array([[5.0, 0, 0]]), np.array([1.0]))))


def test_temperature_scaling_lowers_nll_on_an_overconfident_set():
    rng = np.random.default_rng(1)
    n = 600
    targets = rng.integers(0, 3, n)
    true_logits = rng.normal(0, 1, (n, 3))
    true_logits[np.arange(n), targets] += 1.0          # informative but uncertain
    sampled = np.array([rng.choice(3, p=np.exp(row - row.max()) / np.exp(row - row.max()).sum())
                        for row in true_logits])        # labels drawn from the true probabilities
    tumors = [(4.0 * z[None], np.ones(1)) for z in true_logits]   # a model 4x too confident
    before = tumor_log_probs(tumors, 1.0)
    t = fit_temperature(tumors, sampled)
    after = tumor_log_probs(tumors, t)
    assert 2.5 < t < 6.0
    assert nll(after, sampled) < nll(before, sampled) - 0.1
    assert ece(np.exp(after), sampled) < ece(np.exp(before), sampled)
    assert (after.argmax(1) == before.argmax(1)).all()
    # an error-free set gives no evidence for sharpening: the temperature stays 1
    assert fit_temperature(tumors, before.argmax(1)) == 1.0


def _synthetic_samples(n_tumors: int, seed: int) -> dict:
    """Packed samples: a bright disc (class 0), a ring (1) or an off-centre blob (2) with masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:CROP, :CROP] - CROP / 2
    images, masks, areas, owner, targets = [], [], [], [], []
    for t in range(n_tumors):
        k = t % 3
        for s in range(2):
            r = rng.uniform(4, 8)
            tumor = yy ** 2 + xx ** 2 <= r ** 2
            img = rng.normal(0.3, 0.05, (CROP, CROP)) + tumor * (0.4 + 0.2 * k)
            canal = (np.abs(xx) <= 10) if k < 2 else (np.abs(xx - 15) <= 6)
            cord = (np.abs(xx) <= 5) if k == 0 else np.zeros_like(tumor)
            images.append(img.astype(np.float16))
            masks.append((tumor * TUMOR_BIT | canal * CANAL_BIT | cord * CORD_BIT).astype(np.uint8))
            areas.append(float(tumor.sum()))
            owner.append(t)
        targets.append(k)
    return {"images": np.stack(images), "masks": np.stack(masks), "areas": np.asarray(areas, np.float32),
            "owner": np.asarray(owner, np.int32), "targets": np.asarray(targets, np.int64),
            "sources": np.asarray([f"synthetic:{t}" for t in range(n_tumors)]),
            "has_anatomy": np.ones(n_tumors, bool)}


def _tiny_run(tmp_path, name, epochs, resume=False, stop_after=None):
    from spinetumor.classification.train import TrainConfig, cache_paths, train

    config = TrainConfig(epochs=epochs, steps_per_epoch=2, batch_size=6, train_phantoms=6, val_phantoms=3,
                         net=CNNConfig(in_channels=4, width=4, hidden=8).to_dict(), calibration="truth")
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    for path, data in zip(cache_paths(cache, config), (_synthetic_samples(6, 0), _synthetic_samples(3, 1))):
        if not path.exists():
            np.savez_compressed(path, **data)
    return train(tmp_path / name, config, resume=resume, device="cpu", cache_dir=cache, stop_after=stop_after,
                 log=lambda *_: None)


def test_checkpoint_resume_reproduces_an_uninterrupted_run(tmp_path):
    from spinetumor.classification.train import load_checkpoint

    torch.set_num_threads(1)
    full = _tiny_run(tmp_path, "full", 3)
    interrupted = _tiny_run(tmp_path, "split", 3, stop_after=2)
    assert len(interrupted["history"]) == 2 and not (tmp_path / "split" / "summary.json").exists()
    resumed = _tiny_run(tmp_path, "split", 3, resume=True)
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [h["loss"] for h in full["history"]] == [h["loss"] for h in resumed["history"]]
    assert resumed["temperature"] == pytest.approx(full["temperature"])
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["validation_calibrated"]["confusion_matrix"] is not None


def test_weights_with_a_wrong_sha256_are_refused(tmp_path):
    net = build_cnn(CNNConfig(in_channels=2, width=4, hidden=8))
    weights = tmp_path / "m.safetensors"
    export_model(net.state_dict(), CNNConfig(in_channels=2, width=4, hidden=8).to_dict(), 1.5, weights, {})
    model = load_model(weights)
    assert model.temperature == 1.5 and model.channels == 2
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_model(weights)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.safetensors")


def test_hook_packs_cases_and_rejects_unknown_types():
    from spinetumor.phantom import generate

    case = generate(TEST_SEED0 + 900, "extradural")
    sac, cord = phantom_anatomy_masks(case.anatomy)
    mask = case.tumor.with_array((case.tumor.array == 1).astype(np.uint8))
    data = samples_from_cases([(case.image, mask, sac, cord, "extradural")])
    assert data["targets"].tolist() == [CLASSES.index("extradural")]
    p = tumor_patches(case.image, mask, sac, cord)
    assert data["images"].shape == (len(p.image), CROP, CROP)
    centre = p.tumor[:, CROP // 2 - 3:CROP // 2 + 4, CROP // 2 - 3:CROP // 2 + 4]
    assert centre.reshape(len(p.tumor), -1).any(axis=1).all()       # patches are tumor-centred
    assert p.area_mm2.sum() == pytest.approx((mask.array > 0).sum() * np.prod(case.image.spacing)
                                             / max(case.image.spacing), rel=1e-6)
    with pytest.raises(ValueError, match="unknown tumor type"):
        samples_from_cases([(case.image, mask, sac, cord, "glioma")])


@pytest.mark.skipif(not SHIPPED, reason="no shipped tumor-type model")
def test_shipped_model_classifies_a_fresh_phantom_tumor_of_each_type():
    from spinetumor.classification.infer import classify_tumor
    from spinetumor.phantom import generate

    model = load_model()
    manifest = model.manifest
    assert manifest["validation"]["calibrated"]["confusion_matrix"]
    assert DEFAULT_WEIGHTS.stat().st_size < 10e6
    for offset, kind in ((3, "intramedullary"), (1, "intradural-extramedullary"), (2, "extradural")):
        seed = TEST_SEED0 + 990 + offset
        case = generate(seed, kind)
        sac, cord = phantom_anatomy_masks(case.anatomy)
        mask = case.tumor.with_array((case.tumor.array == 1).astype(np.uint8))
        found, probs = classify_tumor(case.image, mask, sac, cord, model=model)
        assert found == kind, probs
        assert sum(probs.values()) == pytest.approx(1.0) and set(probs) == set(CLASSES)
        assert probs[kind] > 0.5


def test_cli_bad_inputs_exit_2(tmp_path, capsys):
    from spinetumor.cli import main

    assert main(["classify", str(tmp_path / "nope.nii.gz"), "--tumor", str(tmp_path / "t.nii.gz")]) == 2
    assert "spinetumor classify: error:" in capsys.readouterr().err
    assert main(["train", "classification", "--out", str(tmp_path / "run"), "--epochs", "0"]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err
    assert main(["train", "classification", "--out", str(tmp_path / "run"), "--resume"]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


def test_cli_classify_reports_each_tumor(tmp_path, capsys):
    from spinetumor.cli import main
    from spinetumor.io import write_volume
    from spinetumor.phantom import generate

    if not SHIPPED:
        pytest.skip("no shipped tumor-type model")
    case = generate(TEST_SEED0 + 995, "extradural")
    sac, cord = phantom_anatomy_masks(case.anatomy)
    paths = {name: write_volume(vol, tmp_path / f"{name}.nii.gz") for name, vol in
             (("image", case.image), ("tumor", case.tumor), ("canal", sac), ("cord", cord))}
    empty = write_volume(case.tumor.with_array(np.zeros_like(case.tumor.array)), tmp_path / "empty.nii.gz")
    args = ["classify", str(paths["image"]), "--tumor", str(paths["tumor"]), "--canal", str(paths["canal"]),
            "--cord", str(paths["cord"]), "--json", str(tmp_path / "out.json")]
    assert main(args) == 0
    assert "tumor 1: extradural" in capsys.readouterr().out
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["tumors"][0]["type"] == "extradural"
    assert main(["classify", str(paths["image"]), "--tumor", str(empty)]) == 2
    assert "the tumor mask is empty" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    shutil.copy(DEFAULT_WEIGHTS, bad)
    shutil.copy(DEFAULT_WEIGHTS.with_suffix(".json"), bad.with_suffix(".json"))
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    assert main(args[:2] + ["--tumor", str(paths["tumor"]), "--model", str(bad)]) == 2
    assert "sha256" in capsys.readouterr().err
