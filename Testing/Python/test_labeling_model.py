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
    assert result.missing == []
