"""Device choice: CUDA, then MPS, then CPU; overridable by argument and $SPINETUMOR_DEVICE."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from spinetumor.device import ENV_VAR, DeviceError, select_device  # noqa: E402


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device("auto").type == "cpu"


def test_environment_variable_overrides_auto(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device().type == "cpu"
    assert select_device("cuda:1") == torch.device("cuda:1")      # an explicit choice beats the variable


def test_unavailable_or_unknown_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU is available"):
        select_device("cuda")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        select_device("tpu")


def test_exact_inference_turns_tf32_off_inside_and_restores_it_after():
    from spinetumor.device import exact_inference

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with exact_inference():
            assert torch.is_inference_mode_enabled()
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with pytest.raises(RuntimeError, match="boom"):
            with exact_inference():
                raise RuntimeError("boom")
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_the_engine_uses_as_many_cpu_threads_as_torch():
    from spinetumor.device import cpu_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert cpu_threads() == 1
        torch.set_num_threads(3)
        assert cpu_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_thread_map_keeps_the_order_of_a_plain_loop():
    from spinetumor.device import thread_map

    assert thread_map(lambda x: x * x, range(7)) == [x * x for x in range(7)]
    assert thread_map(str, []) == []
