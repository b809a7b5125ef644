"""The whole analysis on a CUDA GPU gives the CPU's findings (skipped where torch sees no GPU).

CI has no GPU, so these run only on a developer's machine with one; benchmarks/gpu.py measures
the same agreement and the speed on more cases.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def both_devices():
    """One phantom with an intradural-extramedullary tumor, analysed on the CPU and on the GPU."""
    from spinetumor.phantom import generate
    from spinetumor.pipeline import analyze

    case = generate(910001, tumor="intradural-extramedullary")
    return case, analyze(case.image, "phantom", device="cpu"), analyze(case.image, "phantom", device="cuda")


def test_gpu_labels_the_same_vertebrae(both_devices):
    _, cpu, gpu = both_devices
    assert [v["level"] for v in cpu.report["vertebrae"] if v["present"]] == \
        [v["level"] for v in gpu.report["vertebrae"] if v["present"]]
    assert np.mean(cpu.vertebrae.array == gpu.vertebrae.array) > 0.999


def test_gpu_finds_the_same_tumor_with_the_same_type_and_levels(both_devices):
    from spinetumor.metrics import overlap

    case, cpu, gpu = both_devices
    assert cpu.report["tumors"], "the CPU run should find the phantom's tumor"
    assert [(t["type"], t["levels"]) for t in gpu.report["tumors"]] == \
        [(t["type"], t["levels"]) for t in cpu.report["tumors"]]
    assert overlap(gpu.tumor_instances.array > 0, cpu.tumor_instances.array > 0)["dice"] > 0.98
    for c, g in zip(cpu.report["tumors"], gpu.report["tumors"]):
        for name, p in c["type_probabilities"].items():
            assert abs(g["type_probabilities"][name] - p) < 0.02


def test_gpu_output_keeps_the_input_geometry(both_devices):
    case, _, gpu = both_devices
    for volume in (gpu.vertebrae, gpu.tumor_instances, gpu.tumor_probability):
        assert volume.shape == case.image.shape
        np.testing.assert_allclose(volume.spacing, case.image.spacing)
        np.testing.assert_allclose(volume.origin, case.image.origin)
        np.testing.assert_allclose(volume.direction, case.image.direction)


def test_torch_fuzzy_c_means_on_the_gpu_equals_the_cpu():
    from spinetumor.segmentation.fcm import fcm_torch

    rng = np.random.default_rng(2)
    intensity = np.concatenate([rng.normal(mu, 15, 4000) for mu in (40, 180, 420)])
    features = np.stack([intensity, 0.5 * intensity + rng.normal(0, 20, intensity.size)], axis=1)
    cpu = fcm_torch(features, 3, 2.0, 0.005, 1000, seed=4, device="cpu")
    gpu = fcm_torch(features, 3, 2.0, 0.005, 1000, seed=4, device="cuda")
    assert gpu.device.startswith("cuda")
    assert gpu.n_iter == cpu.n_iter
    np.testing.assert_allclose(gpu.centers, cpu.centers, atol=1e-6)
    np.testing.assert_allclose(gpu.memberships, cpu.memberships, atol=1e-6)
