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

    The network finds one of them only in the slices left and right of the midline, in two
    pieces each smaller than a body; post-processing takes them as one body
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
    # its three uppermost bodies are found only in patches (2-3 ml): the labeling says so
    assert result.partial_levels() == present[:3]
    assert result.cautions()[0] == result.partial_note() and result.cautions()[1] == result.sacrum_note()


def test_shipped_model_finds_the_vertebral_bodies_of_another_sites_scan(test_data):
    """The TPTBox sample (another site and scanner, 1.5 mm, PIR) holds three cervical vertebrae:
    no lumbar name can be right, but the bodies must be found. Dice of every labeled voxel
    against the reference's vertebral-body voxels (subregion 49); 0.70 when written
    (benchmarks/other_scanner.py)."""
    from spinetumor.io import read_volume
    from spinetumor.labeling.infer import label_vertebrae
    from spinetumor.metrics import overlap

    folder = test_data / "tptbox_sample_mri"
    image = read_volume(folder / "sub-mri_label-6_T2w.nii.gz")
    body = read_volume(folder / "sub-mri_seg-subreg_label-6_msk.nii.gz").array == 49
    scores = overlap(label_vertebrae(image, device="cpu", model=load_model()).labels.array > 0, body)
    assert scores["dice"] >= 0.6, f"body Dice {scores['dice']:.3f}"
    assert scores["precision"] >= 0.8                       # what it labels is vertebral body


def test_found_and_named_takes_where_from_the_finder_and_which_level_from_the_namer():
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
    combined = found_and_named(finder, namer)
    probs = torch.softmax(combined(torch.zeros(2, 1, 4, 4)), dim=1)[0, :, 0, 0]
    assert probs[0].item() == pytest.approx(0.2, abs=1e-4)                # where: the finder's
    assert probs[1:].argmax().item() + 1 == 2                             # which: the namer's (T12)
    assert probs[2].item() == pytest.approx(0.8 * 0.6, abs=1e-4)
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-4)
