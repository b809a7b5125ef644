"""The shipped vertebra-labeling model: manifest, checksum, size, and a real held-out case."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from spinetumor.labeling.model import DEFAULT_WEIGHTS, load_model, sha256_of  # noqa: E402


def test_shipped_model_matches_its_manifest():
    manifest = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert sha256_of(DEFAULT_WEIGHTS) == manifest["sha256"]
    assert DEFAULT_WEIGHTS.stat().st_size < 30e6
    for key in ("architecture", "input_spacing_mm", "training", "command", "validation", "date"):
        assert key in manifest, key
    assert manifest["training"]["split"]["validation"] == ["chu_17", "chu_18", "chu_19"]
    assert not set(manifest["training"]["split"]["train"]) & set(manifest["training"]["split"]["validation"])
    model, loaded = load_model()
    assert loaded["architecture"]["depth"] == 6 and loaded["architecture"]["attention"] is True
    assert not model.training


@pytest.mark.slow
@pytest.mark.shared_data
def test_shipped_model_labels_a_held_out_chu_case(shared_data):
    """chu_17 was never trained on; the shipped model names all seven levels there."""
    from spinetumor.labeling.commands import evaluate_labels
    from spinetumor.labeling.dataset import load_chu_case
    from spinetumor.labeling.infer import label_vertebrae

    image, truth = load_chu_case(shared_data / "chu_lumbar_t2", "chu_17")
    result = label_vertebrae(image, device="cpu", model=load_model())
    assert result.labels.same_geometry(image)
    metrics = evaluate_labels(result.labels, truth)
    assert metrics["all_levels_right"]
    assert metrics["summary"]["identification_rate"] == 1.0
    assert min(m["dice"] for m in metrics["per_level"].values()) > 0.75
    assert result.missing == [] and result.partial_levels() == [] and result.cautions() == []


def test_shipped_model_names_every_body_of_the_bundled_thoracolumbar_sample():
    """The SCT sample (another scanner, a 38 mm left-right slab, no sacrum) shows six bodies.

    The single network shipped before found one of them only in the slices left and right of
    the midline, in two pieces each smaller than a body, which post-processing takes as one body
    (``postprocess.body_pieces``), so the named levels run without a gap. There are no
    reference labels: the names are checked for being a contiguous run of six, not against a truth.
    """
    from pathlib import Path

    from spinetumor.io import read_volume
    from spinetumor.labeling.infer import label_vertebrae

    sample = Path(__file__).resolve().parents[2] / "Resources" / "SampleData" / "sct_t2_lumbar" / "t2_lumbar.nii.gz"
    result = label_vertebrae(read_volume(sample), device="cpu", model=load_model())
    present = [name for name, level in result.levels.items() if level.present]
    names = list(result.levels)
    assert len(present) == 6, present
    assert present == names[names.index(present[0]):names.index(present[0]) + 6]
    # its two uppermost bodies are found only in patches (2-3 ml): the labeling says so
    assert result.partial_levels() == present[:2]
    assert result.cautions()[0] == result.partial_note() and result.cautions()[1] == result.sacrum_note()


def test_shipped_model_finds_the_vertebral_bodies_of_another_sites_scan(test_data):
    """The TPTBox sample (another site and scanner, 1.5 mm, PIR) holds three cervical vertebrae:
    no lumbar name can be right, but the bodies must be found. Dice of every labeled voxel
    against the reference's vertebral-body voxels (subregion 49); 0.807 with the shipped pair
    when written, 0.700 with the single network shipped before (benchmarks/other_scanner.py)."""
    from spinetumor.io import read_volume
    from spinetumor.labeling.infer import label_vertebrae
    from spinetumor.metrics import overlap

    folder = test_data / "tptbox_sample_mri"
    image = read_volume(folder / "sub-mri_label-6_T2w.nii.gz")
    body = read_volume(folder / "sub-mri_seg-subreg_label-6_msk.nii.gz").array == 49
    scores = overlap(label_vertebrae(image, device="cpu", model=load_model()).labels.array > 0, body)
    assert scores["dice"] >= 0.75, f"body Dice {scores['dice']:.3f}"
    assert scores["precision"] >= 0.8                       # what it labels is vertebral body


def test_found_and_named_keeps_a_body_either_network_finds_and_names_it_by_the_namer():
    import torch

    from spinetumor.labeling.model import found_and_named

    class Fixed(torch.nn.Module):
        """Gives the same class probabilities at every pixel."""

        def __init__(self, probs):
            super().__init__()
            self.logits = torch.log(torch.tensor(probs)).view(1, -1, 1, 1)

        def forward(self, x):
            return self.logits.expand(x.shape[0], -1, x.shape[2], x.shape[3])

    finder = Fixed([0.2, 0.8, 0, 0, 0, 0, 0, 0])                         # vertebra, and calls it T11
    namer = Fixed([0.9, 0.02, 0.06, 0.02, 0, 0, 0, 0])                   # background, but if a body: T12
    probs = torch.softmax(found_and_named(finder, namer)(torch.zeros(2, 1, 4, 4)), dim=1)[0, :, 0, 0]
    assert probs[0].item() == pytest.approx(0.2, abs=1e-4)                # a body: the finder found it
    assert probs[1:].argmax().item() + 1 == 2                             # which: the namer's (T12)
    assert probs[2].item() == pytest.approx(0.8 * 0.6, abs=1e-4)
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-4)
    # a body the finder misses but the namer finds is kept: background is the smaller of the two
    probs = torch.softmax(found_and_named(namer, finder)(torch.zeros(1, 1, 4, 4)), dim=1)[0, :, 0, 0]
    assert probs[0].item() == pytest.approx(0.2, abs=1e-4)
    assert probs[1].item() == pytest.approx(0.8, abs=1e-3)                # named by the second: T11


def test_a_found_and_named_pair_ships_in_one_file_and_loads_back(tmp_path):
    """export_model/load_model keep both networks of a pair (one file, one sha256)."""
    from spinetumor.labeling.model import FOUND_AND_NAMED, export_model, found_and_named
    from spinetumor.labeling.network import NetConfig, build_unet

    torch.manual_seed(0)
    config = NetConfig(depth=4, base=2)
    pair = found_and_named(build_unet(config), build_unet(config)).eval()
    weights = tmp_path / "pair.safetensors"
    manifest = export_model(pair.state_dict(), config.to_dict(), weights, {}, FOUND_AND_NAMED)
    assert manifest["composition"] == FOUND_AND_NAMED and manifest["sha256"] == sha256_of(weights)
    loaded, _ = load_model(weights)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        expected, actual = pair(x), loaded(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(expected, actual, atol=1e-4)


def test_fine_tuning_from_a_pair_names_the_network_to_start_from(tmp_path):
    from spinetumor.labeling.model import FOUND_AND_NAMED, ModelError, export_model, found_and_named
    from spinetumor.labeling.network import NetConfig, build_unet
    from spinetumor.labeling.train import initial_weights

    torch.manual_seed(0)
    config = NetConfig(depth=4, base=2)
    finder, namer = build_unet(config), build_unet(config)
    weights = tmp_path / "pair.safetensors"
    export_model(found_and_named(finder, namer).state_dict(), config.to_dict(), weights, {}, FOUND_AND_NAMED)
    with pytest.raises(ModelError, match="holds two networks.*pair.safetensors:finder or .*pair.safetensors:namer"):
        initial_weights(weights)
    for part, network in (("finder", finder), ("namer", namer)):
        state = initial_weights(f"{weights}:{part}")
        assert state.keys() == network.state_dict().keys()
        assert all(torch.equal(state[k], v) for k, v in network.state_dict().items())
    single = tmp_path / "single.safetensors"
    export_model(finder.state_dict(), config.to_dict(), single, {})
    with pytest.raises(ModelError, match="holds one network"):
        initial_weights(f"{single}:namer")
    with pytest.raises(ModelError, match="weights to start from not found"):
        initial_weights(tmp_path / "missing.safetensors")


def test_a_namer_of_another_architecture_is_refused(tmp_path):
    from spinetumor.labeling.model import ModelError, export_model
    from spinetumor.labeling.network import NetConfig, build_unet
    from spinetumor.labeling.ship import with_namer

    finder, other = NetConfig(depth=4, base=2), NetConfig(depth=4, base=4)
    namer = tmp_path / "namer.safetensors"
    export_model(build_unet(other).state_dict(), other.to_dict(), namer, {"date": "2026-12-07"})
    with pytest.raises(ModelError, match="architecture"):
        with_namer(build_unet(finder).state_dict(), finder.to_dict(), namer)
    state, provenance = with_namer(build_unet(other).state_dict(), other.to_dict(), namer)
    assert provenance["sha256"] == sha256_of(namer) and provenance["date"] == "2026-12-07"
    assert {key.split(".", 1)[0] for key in state} == {"finder", "namer"}
