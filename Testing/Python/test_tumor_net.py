"""The tumor probability network (a forest feature): input layout, grids, model safety, training run, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from spinetumor.labeling.model import ModelError
from spinetumor.segmentation import tumor_net
from spinetumor.segmentation.tumor_net import (DEFAULT_NET, NET_MM, from_net_grid, load_tumor_net, net_channels,
                                               predict_probability, to_net_grid)


def test_channels_are_the_neighbouring_slices_and_the_sac():
    norm = np.arange(3, dtype=np.float32)[:, None, None] * 0.5 + np.zeros((3, 4, 5), np.float32)
    sac = np.zeros((3, 4, 5), bool)
    sac[1, 2, 3] = True
    x = net_channels(norm, sac)
    assert x.shape == (3, 4, 4, 5)
    assert x[1, 0, 0, 0] == 0.0 and x[1, 1, 0, 0] == 0.5 and x[1, 2, 0, 0] == 1.0
    assert x[0, 0, 0, 0] == 0.0 and x[2, 2, 0, 0] == 1.0          # edges repeat their own slice
    assert x[1, 3].sum() == 1 and x[1, 3, 2, 3] == 1 and x[0, 3].sum() == 0
    assert net_channels(norm * 10, sac)[:, :3].max() == tumor_net.CLIP


def test_network_grid_round_trip_keeps_shape_and_values():
    rng = np.random.default_rng(0)
    work = rng.random((2, 60, 40)).astype(np.float32)
    spacing = np.array([4.0, 0.7, 0.7])
    net = to_net_grid(work, spacing)
    assert net.shape == (2, round(60 * 0.7 / NET_MM), round(40 * 0.7 / NET_MM))
    back = from_net_grid(net, work.shape)
    assert back.shape == work.shape
    flat = np.full_like(work, 0.25)
    assert np.allclose(from_net_grid(to_net_grid(flat, spacing), work.shape), 0.25)
    assert to_net_grid(work, np.array([4.0, 1.0, 1.0])) is not None
    assert np.array_equal(to_net_grid(work, np.array([4.0, 1.0, 1.0])), work)


def _tiny_run(tmp_path):
    from spinetumor.segmentation.net_train import NetTrainConfig, ship, train

    out = tmp_path / "run"
    config = NetTrainConfig(phantoms=4, val_cases=4, epochs=1, steps=2, batch=2)
    train(out, config, device="cpu", log=lambda *a: None)
    return out, ship(out, out / "tumor_net.safetensors", "test")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_run(tmp_path_factory.mktemp("tumor_net"))


def test_training_writes_a_loadable_checked_network(tiny):
    out, manifest = tiny
    assert (out / "cache").is_dir() and len(list((out / "cache").glob("*.npz"))) == 8
    assert manifest["validation"]["epoch"] == 0 and manifest["command"] == "test"
    net = load_tumor_net(out / "tumor_net.safetensors")
    assert net.sha256 == manifest["sha256"]
    norm = np.random.default_rng(1).random((3, 50, 30)).astype(np.float32)
    sac = np.zeros(norm.shape, bool)
    sac[:, :, 10:15] = True
    prob = predict_probability(net, norm, sac, np.array([4.0, 0.8, 0.8]))
    assert prob.shape == norm.shape and 0.0 <= prob.min() and prob.max() <= 1.0


def test_resume_continues_after_the_last_epoch(tiny, tmp_path):
    from spinetumor.segmentation.net_train import NetTrainConfig, train

    out, _ = tiny
    run = tmp_path / "run"
    shutil.copytree(out, run)
    history = train(run, NetTrainConfig(epochs=2), resume=True, device="cpu", log=lambda *a: None)["history"]
    assert [h["epoch"] for h in history] == [0, 1]
    assert history[0] == json.loads(json.dumps(history[0]))


def test_altered_weights_are_refused(tiny, tmp_path):
    out, _ = tiny
    copy = tmp_path / "tumor_net.safetensors"
    shutil.copy(out / "tumor_net.safetensors", copy)
    manifest = json.loads((out / "tumor_net.json").read_text())
    manifest["sha256"] = "1" * 64
    copy.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="sha256"):
        load_tumor_net(copy)
    manifest = json.loads((out / "tumor_net.json").read_text())
    manifest["input_spacing_mm"] = 0.5
    copy.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="another input"):
        load_tumor_net(copy)


def test_patches_centred_on_tumors_hold_tumor(tiny):
    from spinetumor.segmentation.net_train import PATCH, _indices, draw_batch

    out, _ = tiny
    cases = {p.stem: dict(np.load(p)) for p in (out / "cache").glob("phantom_*.npz")}
    cases = {k: v for k, v in cases.items() if v["tumor"].any()}
    tumor_index, sac_index = _indices(cases)
    x, y = draw_batch(cases, sorted(cases), tumor_index, sac_index, 40, np.random.default_rng(3))
    assert x.shape == (40, 4, *PATCH) and y.shape == (40, *PATCH)
    assert 0.3 <= np.mean([t.any() for t in y]) <= 0.9      # half are drawn at tumors (some by chance too)
    assert set(np.unique(x[:, 3])) <= {0.0, 1.0}


def test_cli_refuses_a_folder_that_is_not_a_dataset(tmp_path, capsys):
    from spinetumor.cli import main

    code = main(["train", "tumor-net", "--out", str(tmp_path / "o"), "--extra", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not an augmented dataset" in err[0]
    code = main(["train", "tumor-net", "--out", str(tmp_path / "o"), "--negatives", str(tmp_path / "a.nii.gz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "NAME_t2.nii.gz" in err[0]


def test_shipped_network_manifest_records_its_provenance():
    net = load_tumor_net()
    m = net.manifest
    assert m["command"].startswith("spinetumor train tumor-net")
    assert m["architecture"] == tumor_net.NET_CONFIG
    assert DEFAULT_NET.stat().st_size < 20 * 1024 * 1024


def test_fine_tuning_starts_from_the_given_weights(tiny, tmp_path):
    """--init loads the weights before the first step; --hard-negatives writes its pool."""
    from spinetumor.labeling.train import initial_weights
    from spinetumor.segmentation.net_train import NetTrainConfig, train

    out, _ = tiny
    run = tmp_path / "ft"
    shutil.copytree(out / "cache", run / "cache")
    config = NetTrainConfig(phantoms=4, val_cases=4, epochs=1, steps=1, batch=2, lr=1e-12,
                            init_from=str(out / "tumor_net.safetensors"), hard_negatives=0.5)
    lines = []
    train(run, config, device="cpu", log=lines.append)
    assert any(line.startswith("initialized from") for line in lines)
    start = initial_weights(out / "tumor_net.safetensors")
    tuned = initial_weights(run / "best.pt")
    learned = [k for k in start if "running_" not in k and "num_batches" not in k]   # norm statistics move anyway
    assert learned and all(np.allclose(start[k].numpy(), tuned[k].numpy(), atol=1e-6) for k in learned)
    assert (run / "hard_negatives.npz").exists() and (run / "hard_positives.npz").exists()


class _SaysTumorEverywhere:
    """A stand-in network whose logits call every pixel tumor."""

    def eval(self):
        return self

    def __call__(self, x):
        import torch

        zero = x[:, 0] * 0
        return torch.stack([zero, zero + 10], 1)


def test_hard_negatives_are_false_positives_away_from_tumors():
    from spinetumor.segmentation.net_train import HARD_MARGIN, mistake_index

    shape = (3, 40, 30)
    tumor = np.zeros(shape, np.uint8)
    tumor[1, 20:24, 10:14] = 1
    case = {"image": np.ones(shape, np.float16), "sac": np.ones(shape, np.uint8), "tumor": tumor}
    negatives, positives = mistake_index(_SaysTumorEverywhere(), {"c": case}, "cpu")
    assert positives == {}                           # it misses no tumor pixel
    index = negatives["c"]
    near = (4 + 2 * HARD_MARGIN) ** 2               # the tumor's 4 x 4 pixels grown by the margin in-plane
    assert len(index) == tumor.size - near           # every other pixel (fewer than HARD_PER_CASE here)
    for s, r, c in index:
        assert not tumor[s, max(r - HARD_MARGIN, 0):r + HARD_MARGIN + 1, max(c - HARD_MARGIN, 0):c + HARD_MARGIN + 1].any()
    assert (index[:, 0] == 0).any() and (index[:, 0] == 2).any()      # other slices are negatives everywhere


class _SaysTumorNowhere(_SaysTumorEverywhere):
    """A stand-in network whose logits call every pixel background."""

    def __call__(self, x):
        import torch

        zero = x[:, 0] * 0
        return torch.stack([zero + 10, zero], 1)


def test_hard_positives_are_the_tumor_pixels_the_network_misses():
    from spinetumor.segmentation.net_train import mistake_index

    shape = (3, 40, 30)
    tumor = np.zeros(shape, np.uint8)
    tumor[1, 20:24, 10:14] = 1
    tumor[2, 21:23, 11:13] = 1
    case = {"image": np.ones(shape, np.float16), "sac": np.zeros(shape, np.uint8), "tumor": tumor}
    negatives, positives = mistake_index(_SaysTumorNowhere(), {"c": case, "free": {**case, "tumor": 0 * tumor}}, "cpu")
    assert negatives == {} and list(positives) == ["c"]
    assert sorted(map(tuple, positives["c"])) == sorted(map(tuple, np.argwhere(tumor)))


def test_hard_positive_fraction_draws_patches_at_the_missed_tumor_pixels():
    from spinetumor.segmentation.net_train import _indices, draw_batch

    shape = (10, 400, 100)
    sac = np.zeros(shape, np.uint8)
    sac[0, 10, 10] = 1
    tumor = np.zeros(shape, np.uint8)
    tumor[9, 388:393, 88:93] = 1
    case = {"image": np.zeros(shape, np.float16), "sac": sac, "tumor": tumor}
    tumor_index, sac_index = _indices({"c": case})
    missed = {"c": np.array([[9, 390, 90]])}
    _, y = draw_batch({"c": case}, ["c"], tumor_index, sac_index, 20, np.random.default_rng(0),
                      positive_index=missed, positive_fraction=1.0)
    assert all(t.any() for t in y)                  # every patch at the missed pixel
    _, y = draw_batch({"c": case}, ["c"], tumor_index, sac_index, 20, np.random.default_rng(0))
    assert not all(t.any() for t in y)              # otherwise about half are drawn at the sac
    again = draw_batch({"c": case}, ["c"], tumor_index, sac_index, 20, np.random.default_rng(0),
                       positive_index=missed, positive_fraction=0.0)
    assert np.array_equal(again[1], y)              # a pool at fraction 0 draws what no pool draws


def test_hard_fraction_draws_patches_at_the_hard_negatives():
    from spinetumor.segmentation.net_train import _indices, draw_batch

    shape = (10, 400, 100)
    sac = np.zeros(shape, np.uint8)
    sac[0, 10, 10] = 1
    case = {"image": np.zeros(shape, np.float16), "sac": sac, "tumor": np.zeros(shape, np.uint8)}
    tumor_index, sac_index = _indices({"c": case})
    hard = {"c": np.array([[9, 390, 90]])}
    x, _ = draw_batch({"c": case}, ["c"], tumor_index, sac_index, 20, np.random.default_rng(0), hard, 1.0)
    assert x[:, 3].sum() == 0                       # every patch at the hard negative, far from the sac pixel
    x, _ = draw_batch({"c": case}, ["c"], tumor_index, sac_index, 20, np.random.default_rng(0), hard, 0.0)
    assert x[:, 3].sum() > 0                        # without the pool, patches are drawn at the sac


def test_cli_hard_negatives_need_starting_weights(tmp_path, capsys):
    from spinetumor.cli import main

    code = main(["train", "tumor-net", "--out", str(tmp_path / "o"), "--hard-negatives", "0.3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--hard-negatives needs --init" in err[0]
    code = main(["train", "tumor-net", "--out", str(tmp_path / "o"), "--hard-positives", "0.3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--hard-positives needs --init" in err[0]
    code = main(["train", "tumor-net", "--out", str(tmp_path / "o"), "--init", str(tmp_path / "none.pt"),
                 "--hard-positives", "0.6", "--hard-negatives", "0.4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "sum under 1" in err[0]
    code = main(["train", "tumor-net", "--out", str(tmp_path / "o"), "--init", str(tmp_path / "none.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no such weights file" in err[0]


def test_hard_negatives_are_searched_in_every_phantom_but_a_share_of_augmented_samples():
    from spinetumor.segmentation.net_train import HARD_SEARCH_EVERY_AUGMENTED, mistake_index

    shape = (2, 20, 20)
    case = {"image": np.ones(shape, np.float16), "sac": np.ones(shape, np.uint8), "tumor": np.zeros(shape, np.uint8)}
    names = [f"aug_{i:02d}" for i in range(8)] + ["phantom_1", "free_chu_02"]
    index, _ = mistake_index(_SaysTumorEverywhere(), {n: case for n in names}, "cpu")
    assert sorted(index) == sorted(["phantom_1", "free_chu_02"] + names[:8:HARD_SEARCH_EVERY_AUGMENTED])


def test_predicting_some_slices_gives_those_slices_the_values_of_predicting_all():
    rng = np.random.default_rng(3)
    net = load_tumor_net(device="cpu")
    norm = rng.uniform(0.2, 1.5, (6, 40, 30)).astype(np.float32)
    sac = np.zeros(norm.shape, bool)
    sac[:, 5:35, 12:18] = True
    spacing = np.array([3.0, 1.0, 1.0])
    everything = predict_probability(net, norm, sac, spacing)
    some = predict_probability(net, norm, sac, spacing, slices=[1, 4])
    np.testing.assert_allclose(some[[1, 4]], everything[[1, 4]], atol=1e-6)
    assert not some[[0, 2, 3, 5]].any()
    assert everything.min() >= 0 and everything.max() <= 1


def test_inference_networks_fold_batch_norms_and_use_channels_last_with_the_same_outputs():
    import torch

    from spinetumor.labeling.network import NetConfig, build_unet, for_inference

    torch.manual_seed(0)
    net = build_unet(NetConfig.from_dict(tumor_net.NET_CONFIG)).eval()
    x = torch.randn(2, 4, 64, 48)
    with torch.inference_mode():
        expected = net(x)
        fast = for_inference(net, torch.device("cpu"))
        assert next(fast.parameters()).is_contiguous(memory_format=torch.channels_last)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())    # folded into the convs
        torch.testing.assert_close(fast(x), expected, atol=1e-3, rtol=1e-3)
    shipped = load_tumor_net(device="cpu").net
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in shipped.parameters() if p.dim() == 4)


def _ramp_case(slices: int = 12, slice_mm: float = 1.0) -> dict:
    """A case whose slice n holds the value n / 10 everywhere (so slab means are known), with a
    sac and a tumor that differ per slice."""
    shape = (slices, 140, 110)
    image = (np.arange(slices, dtype=np.float32)[:, None, None] / 10 * np.ones(shape, np.float32)).astype(np.float16)
    sac = np.zeros(shape, np.uint8)
    tumor = np.zeros(shape, np.uint8)
    for n in range(slices):
        sac[n, 20 + n, 30] = 1
        tumor[n, 60, 40 + n] = 1
    return {"image": image, "sac": sac, "tumor": tumor, "slice_mm": np.float32(slice_mm)}


def test_patch_of_one_slice_slabs_is_the_inference_input_of_that_slice():
    from spinetumor.segmentation.net_train import PATCH, _patch

    case = _ramp_case()
    rng = np.random.default_rng(0)
    case["image"] = rng.uniform(0, 3, case["image"].shape).astype(np.float16)     # clipped at CLIP too
    full = net_channels(case["image"].astype(np.float32), case["sac"])          # what inference feeds
    for s in (0, 5, 11):                                                         # edges repeat their slice
        x, y = _patch(case, s, PATCH[0] // 2, PATCH[1] // 2)                    # the patch's window is the box's top left
        np.testing.assert_array_equal(x, full[s][:, :PATCH[0], :PATCH[1]])
        np.testing.assert_array_equal(y, case["tumor"][s, :PATCH[0], :PATCH[1]])


def test_thick_patch_averages_slabs_around_the_slice_and_keeps_the_centre_slice_masks():
    from spinetumor.segmentation.net_train import PATCH, _patch

    case = _ramp_case()
    x, y = _patch(case, 6, 60, 50, slab=3)
    # slabs 2..4, 5..7, 8..10 of values n / 10 -> means 0.3, 0.6, 0.9
    np.testing.assert_allclose(x[:3, 10, 10], [0.3, 0.6, 0.9], atol=2e-3)
    r0, c0 = 60 - PATCH[0] // 2, 50 - PATCH[1] // 2
    assert x[3, 20 + 6 - r0, 30 - c0] == 1 and x[3].sum() == 1                # the centre slice's sac pixel only
    assert y[60 - r0, 40 + 6 - c0] == 1 and y.sum() == 1
    x4, _ = _patch(case, 6, 60, 50, slab=4)               # even: slices 4..7, slice 6 half a slice past the centre
    np.testing.assert_allclose(x4[:3, 10, 10], [np.mean([0.0, 0.1, 0.2, 0.3]), np.mean([0.4, 0.5, 0.6, 0.7]),
                                                np.mean([0.8, 0.9, 1.0, 1.1])], atol=2e-3)
    x_edge, _ = _patch(case, 0, 60, 50, slab=3)                                 # beyond the stack: edge slices
    np.testing.assert_allclose(x_edge[:3, 10, 10], [0.0, np.mean([0, 0, 0.1]), np.mean([0.2, 0.3, 0.4])], atol=2e-3)


def test_only_thin_slice_cases_are_shown_as_thick_slabs():
    from spinetumor.augmentation.thick_slices import CLINICAL_SLICE_MM
    from spinetumor.segmentation.net_train import _slab_of

    rng = np.random.default_rng(1)
    thin, thick = _ramp_case(slice_mm=1.0), _ramp_case(slice_mm=4.0)
    slabs = {_slab_of(thin, rng, 1.0) for _ in range(200)}
    assert slabs == set(range(int(CLINICAL_SLICE_MM[0]), int(CLINICAL_SLICE_MM[1]) + 1))   # 3, 4, 5 slices of 1 mm
    assert {_slab_of(thick, rng, 1.0) for _ in range(50)} == {1}
    assert {_slab_of({k: v for k, v in thin.items() if k != "slice_mm"}, rng, 1.0) for _ in range(50)} == {1}
    state = rng.bit_generator.state
    assert _slab_of(thin, rng, 0.0) == 1 and rng.bit_generator.state == state   # off: no draw, old runs unchanged


def test_another_scanners_look_changes_the_three_slices_alike_and_keeps_csf_at_one():
    """Patches given another scanner's look stay in the network's input range; the CSF, the
    network's intensity reference, stays at about 1; with the option off nothing is drawn."""
    from spinetumor.segmentation.net_train import _another_look, _indices, draw_batch

    slices = np.full((3, 64, 48), 0.3, np.float32)           # tissue
    slices[:, :, 20:30] = 1.0                                 # CSF
    for seed in range(10):
        out = _another_look(slices, np.random.default_rng(seed))
        assert out.shape == slices.shape and out.min() >= 0.0
        assert abs(float(np.median(out[:, 8:56, 22:28])) - 1.0) < 0.15
        assert float(out[:, 8:56, 22:28].mean()) > float(out[:, 8:56, 4:14].mean()) + 0.2
    shape = (6, 200, 100)
    sac = np.zeros(shape, np.uint8)
    sac[:, 90:110, 40:60] = 1
    image = np.where(sac > 0, 1.0, 0.3).astype(np.float16)
    case = {"image": image, "sac": sac, "tumor": np.zeros(shape, np.uint8)}
    tumor_index, sac_index = _indices({"c": case})
    looked, _ = draw_batch({"c": case}, ["c"], tumor_index, sac_index, 12, np.random.default_rng(0), appearance=1.0)
    plain, _ = draw_batch({"c": case}, ["c"], tumor_index, sac_index, 12, np.random.default_rng(0))
    again, _ = draw_batch({"c": case}, ["c"], tumor_index, sac_index, 12, np.random.default_rng(0), appearance=0.0)
    assert np.array_equal(plain, again) and not np.array_equal(plain, looked)
    assert np.isfinite(looked).all() and np.array_equal(looked[:, 3], looked[:, 3] > 0)
