"""The attention U-Net: shapes of the variants, a training step that learns, exact resume."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spinetumor.labeling.dataset import SliceGrid, save_cache  # noqa: E402
from spinetumor.labeling.network import NetConfig, build_unet, count_parameters, segmentation_loss  # noqa: E402
from spinetumor.labeling.train import (  # noqa: E402
    TrainConfig, WeightAverage, augment_batch, crop_field_of_view, gaussian_blur, load_checkpoint, train,
    vary_appearance)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run faster on one thread, and the machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("depth,attention", [(6, True), (6, False), (4, True), (4, False)])
def test_output_shape_of_each_variant(depth, attention):
    torch.manual_seed(0)
    model = build_unet(NetConfig(depth=depth, base=2, attention=attention)).eval()
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 8, 64, 96)
    gates = [m for m in model.modules() if type(m).__name__ == "AttentionGate"]
    assert len(gates) == (depth - 1 if attention else 0)
    assert len(model.encoders) == depth and len(model.decoders) == depth - 1


def test_default_network_is_small():
    model = build_unet(NetConfig())
    assert count_parameters(model) * 4 < 30e6      # float32 weights under 30 MB


def test_one_training_step_reduces_the_loss():
    torch.manual_seed(0)
    model = build_unet(NetConfig(depth=4, base=4))
    x = torch.rand(2, 1, 32, 32)
    y = (x[:, 0] > 0.5).long() * 3
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    before = segmentation_loss(model(x), y)
    for _ in range(3):
        opt.zero_grad()
        loss = segmentation_loss(model(x), y)
        loss.backward()
        opt.step()
    after = segmentation_loss(model(x), y)
    assert after.item() < before.item() - 0.05


def test_loss_is_low_for_a_confident_right_answer():
    y = torch.zeros(1, 8, 8, dtype=torch.long)
    y[0, 2:5, 2:5] = 4
    logits = torch.nn.functional.one_hot(y, 8).permute(0, 3, 1, 2).float() * 20
    assert float(segmentation_loss(logits, y)) < 1e-3
    assert float(segmentation_loss(-logits, y)) > 2.0


def tiny_cache(tmp_path):
    """Two small synthetic 'cases' (slices of bright boxes on a dark background)."""
    rng = np.random.default_rng(0)
    cases = {}
    for name in ("chu_02", "chu_17"):
        img = np.zeros((4, 60, 50), np.float16)
        lab = np.zeros((4, 60, 50), np.uint8)
        for level in (1, 2, 3):
            img[:, 5 + level * 14:15 + level * 14, 10:30] = 0.5 + 0.1 * level
            lab[:, 5 + level * 14:15 + level * 14, 10:30] = level
        img += rng.normal(0, 0.02, img.shape).astype(np.float16)
        cases[name] = (img, lab)
    return save_cache(tmp_path / "cache.npz", cases)


def tiny_config(epochs):
    return TrainConfig(epochs=epochs, samples_per_epoch=4, batch_size=2, seed=3,
                       train_cases=("chu_02",), val_cases=("chu_17",),
                       net=NetConfig(depth=4, base=2).to_dict())


def test_resume_gives_the_same_state_as_an_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    cache = tiny_cache(tmp_path)
    quiet = lambda *a: None  # noqa: E731
    train(tmp_path / "straight", tiny_config(2), cache=cache, device="cpu", log=quiet)
    train(tmp_path / "resumed", tiny_config(1), cache=cache, device="cpu", log=quiet)
    first = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert first["epoch"] == 0
    train(tmp_path / "resumed", tiny_config(2), cache=cache, device="cpu", log=quiet, resume=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 1
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert (tmp_path / "resumed" / "best.pt").exists()


def test_slice_grid_round_trip_keeps_smooth_images():
    grid = SliceGrid(rows=90, cols=60, row_spacing=4.0, col_spacing=0.8)
    rr, cc = np.meshgrid(np.arange(90) * 4.0, np.arange(60) * 0.8, indexing="ij")
    image = np.sin(rr / 60.0) + np.cos(cc / 15.0)
    fixed = grid.to_fixed(image[None])[0]
    assert fixed.shape == (grid.out_rows, grid.out_cols) == (239, 33)
    back = grid.from_fixed(fixed[None])[0]
    assert np.abs(back - image)[:, 2:-2].max() < 0.05
    labels = grid.labels_to_fixed((image > 0.5).astype(np.uint8)[None])[0]
    assert set(np.unique(labels)) <= {0, 1}


def test_ordinal_term_counts_levels_off():
    y = torch.zeros(1, 8, 8, dtype=torch.long)
    y[0, 2:5, 2:5] = 4
    right = torch.nn.functional.one_hot(y, 8).permute(0, 3, 1, 2).float() * 20
    off_by_two = torch.nn.functional.one_hot(torch.where(y > 0, y + 2, y), 8).permute(0, 3, 1, 2).float() * 20
    base = segmentation_loss(off_by_two, y).item()
    assert segmentation_loss(right, y, ordinal_weight=0.5).item() < 1e-3
    assert segmentation_loss(off_by_two, y, ordinal_weight=0.5).item() == pytest.approx(base + 0.5 * 2, abs=1e-3)


def test_stop_after_then_resume_matches_the_full_schedule(tmp_path):
    cache = tiny_cache(tmp_path)
    quiet = lambda *a: None  # noqa: E731
    train(tmp_path / "full", tiny_config(3), cache=cache, device="cpu", log=quiet)
    train(tmp_path / "parts", tiny_config(3), cache=cache, device="cpu", log=quiet, stop_after=1)
    assert load_checkpoint(tmp_path / "parts" / "checkpoint.pt")["epoch"] == 0
    train(tmp_path / "parts", tiny_config(3), cache=cache, device="cpu", log=quiet, resume=True)
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "parts" / "checkpoint.pt")
    assert [h["lr"] for h in a["history"]] == [h["lr"] for h in b["history"]]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_init_starts_from_the_given_weights(tmp_path):
    cache = tiny_cache(tmp_path)
    quiet = lambda *a: None  # noqa: E731
    train(tmp_path / "first", tiny_config(1), cache=cache, device="cpu", log=quiet)
    source = tmp_path / "first" / "best.pt"
    config = tiny_config(1)
    config.init_from, config.lr = str(source), 0.0          # no update: the weights stay the source's
    train(tmp_path / "tuned", config, cache=cache, device="cpu", log=quiet)
    a = torch.load(source, weights_only=True)["model"]
    b = load_checkpoint(tmp_path / "tuned" / "checkpoint.pt")
    assert b["config"].init_from == str(source)
    for key in a:
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue                                         # normalization statistics still update
        assert torch.equal(a[key], b["model"][key]), key


def test_weight_average_moves_by_one_minus_decay_and_copies_counters():
    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    average = WeightAverage(model, 0.9)
    with torch.no_grad():
        model[0].weight.fill_(3.0)
    model[1].num_batches_tracked += 5
    average.update(model)
    assert torch.allclose(average.state["0.weight"], torch.full((1, 2), 1.2))
    assert int(average.state["1.num_batches_tracked"]) == 5
    copy = average.model_like(model)
    assert torch.allclose(copy[0].weight, torch.full((1, 2), 1.2))
    assert torch.equal(model[0].weight, torch.full((1, 2), 3.0))       # the trained model is untouched
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(model, 1.0)


def test_averaged_run_keeps_the_average_and_resumes_exactly(tmp_path):
    cache = tiny_cache(tmp_path)
    quiet = lambda *a: None  # noqa: E731
    config = lambda: TrainConfig(**{**tiny_config(2).__dict__, "average": 0.5})  # noqa: E731
    train(tmp_path / "full", config(), cache=cache, device="cpu", log=quiet)
    train(tmp_path / "parts", config(), cache=cache, device="cpu", log=quiet, stop_after=1)
    train(tmp_path / "parts", config(), cache=cache, device="cpu", log=quiet, resume=True)
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "parts" / "checkpoint.pt")
    for key in a["average"]:
        assert torch.equal(a["average"][key], b["average"][key]), key
    assert any(not torch.equal(a["average"][k], a["model"][k]) for k in a["model"] if k.endswith("weight"))
    train(tmp_path / "one", config(), cache=cache, device="cpu", log=quiet, stop_after=1)
    first = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    best = torch.load(tmp_path / "one" / "best.pt", weights_only=True)   # the first epoch is always kept
    for key in first["average"]:                                          # as the average, not the raw weights
        assert torch.equal(best["model"][key], first["average"][key]), key
    from benchmarks.labeling import load_run_model

    last, info = load_run_model(tmp_path / "full" / "checkpoint.pt")      # a candidate's last epoch: its average
    assert info["best_epoch"] == info["epochs"] == 2
    for key, value in last.state_dict().items():
        assert torch.equal(value, a["average"][key]), key


def test_field_of_view_crop_blanks_image_and_labels_together():
    rng = np.random.default_rng(1)
    sides = set()
    for _ in range(20):
        image = torch.rand(100, 40) + 0.5
        label = torch.full((100, 40), 3, dtype=torch.long)
        crop_field_of_view(image, label, rng)
        blank = (label == 0).all(dim=1)
        assert torch.equal(blank, (image == 0).all(dim=1))      # image and labels cut at the same rows
        assert 20 <= int(blank.sum()) < 50
        kept = ~blank
        assert bool((label[kept] == 3).all()) and bool((image[kept] >= 0.5).all())
        sides.add("top" if blank[0] else "bottom")
        assert bool(blank[0]) != bool(blank[-1])                 # one contiguous cut at one end
    assert sides == {"top", "bottom"}


def test_augmentation_with_coarse_resolution_keeps_shapes_and_labels():
    rng = np.random.default_rng(2)
    images = torch.rand(4, 1, 64, 64)
    labels = torch.randint(0, 8, (4, 64, 64))
    out_img, out_lab = augment_batch(images.clone(), labels.clone(), rng, fov_crop=0.0, low_resolution=1.0)
    assert out_img.shape == images.shape and out_lab.shape == labels.shape
    assert set(out_lab.unique().tolist()) <= set(range(8))


def test_gaussian_blur_keeps_mass_and_spreads_a_point_by_sigma():
    point = torch.zeros(41, 41)
    point[20, 20] = 1.0
    blurred = gaussian_blur(point, 2.0)
    assert float(blurred.sum()) == pytest.approx(1.0, abs=1e-5)
    offsets = torch.arange(41, dtype=torch.float32) - 20
    variance_rows = float((blurred.sum(dim=1) * offsets ** 2).sum())
    assert variance_rows == pytest.approx(4.0, rel=0.02)
    assert torch.allclose(gaussian_blur(torch.full((9, 9), 0.4), 1.5), torch.full((9, 9), 0.4))


def test_another_scanners_look_keeps_black_padding_and_t2_contrast():
    """Padding stays black and CSF stays brighter than bone for every draw: the look changes, the anatomy's contrast does not."""
    img = torch.zeros(80, 80)
    img[20:60, 20:60] = 0.2                # grey background of the scan (Chu-like floor)
    img[24:56, 24:34] = 0.3                # vertebral bodies
    img[24:56, 42:50] = 0.9                # CSF
    for seed in range(20):
        out = vary_appearance(img.clone(), np.random.default_rng(seed))
        assert out.shape == img.shape and bool(torch.isfinite(out).all()) and float(out.min()) >= 0.0
        assert float(out[:8].max()) == 0.0 and float(out[:, :8].max()) == 0.0   # beyond the blur's reach
        assert float(out[26:54, 44:48].mean()) > float(out[26:54, 26:32].mean()) + 0.1
    a = vary_appearance(img.clone(), np.random.default_rng(3))
    b = vary_appearance(img.clone(), np.random.default_rng(3))
    assert torch.equal(a, b) and not torch.equal(a, img)
