"""Inference: exact geometry on an oblique anisotropic volume, partial field of view, model checksum."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spinetumor.labeling import Cancelled  # noqa: E402
from spinetumor.labeling.infer import (PARTIAL_BODY_ML, SACRUM_VIEW_MM, LabelingResult, LevelResult, inferior_margin_mm,  # noqa: E402
                                      label_vertebrae, tile_starts)
from spinetumor.labeling.model import ModelError, export_model, load_model  # noqa: E402
from spinetumor.labeling.network import NetConfig, build_unet  # noqa: E402
from spinetumor.volume import Volume  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run faster on one thread, and the machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class IntensityOracle(torch.nn.Module):
    """A stand-in network: class ``l`` wins where the normalized intensity is near ``l / 7``.

    It lets the whole pipeline (reorientation, resampling, tiling, post-processing, mapping
    back) be checked against an exact truth without a trained model.
    """

    def forward(self, x):
        centres = torch.arange(8, dtype=x.dtype).view(1, 8, 1, 1) / 7.0
        return -400.0 * (x - centres) ** 2


def oblique_spine(levels=range(1, 8), fov_rows=None):
    """Bodies (value = level / 7 after normalization) in an oblique, anisotropic, axial-like layout.

    The stack is 30 sagittal slices of 3.3 mm, rows 0.9 mm, columns 1.1 mm, stored with
    array axes permuted, and the whole grid rotated 12 degrees about the left-right axis.
    """
    s_n, r_n, c_n = 30, fov_rows or 330, 90
    canon = np.zeros((s_n, r_n, c_n), np.float32)
    for level in levels:
        r0 = 15 + (level - 1) * 42
        if r0 + 30 > r_n:
            continue
        canon[4:26, r0:r0 + 30, 20:60] = level / 7.0 * 700.0
    truth = np.rint(canon / 100.0).astype(np.uint8)
    canon[4:26, r_n - 12:, 20:60] = 700.0      # a sacrum-like bright block: keeps the 99.5th percentile at 1
    angle = np.radians(12.0)
    rot = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    # canonical columns: i = posterior, j = inferior, k = right (LPS)
    canon_dir = rot @ np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    # store as array [r, c, s] -> axes (k, j, i) = (r, c, s): i = s, j = c, k = r
    arr = np.ascontiguousarray(np.transpose(canon, (1, 2, 0)))
    lab = np.ascontiguousarray(np.transpose(truth, (1, 2, 0)))
    direction = np.stack([canon_dir[:, 2], canon_dir[:, 0], canon_dir[:, 1]], axis=1)
    vol = Volume(arr, (3.3, 1.1, 0.9), (-40.0, 25.0, 110.0), direction)
    return vol, vol.with_array(lab)


def test_output_geometry_and_labels_match_on_an_oblique_anisotropic_volume():
    image, truth = oblique_spine()
    fractions = []
    result = label_vertebrae(image, device="cpu", model=IntensityOracle(),
                             progress=lambda f, m: fractions.append(f))
    assert result.labels.same_geometry(image, tol=1e-9)
    assert result.labels.array.dtype == np.uint8
    for level in range(1, 8):
        p, t = result.labels.array == level, truth.array == level
        # > 0.9, not 1: partial-volume rims of each body, which the intensity oracle calls T11,
        # belong to the body they surround (they are part of its connected component)
        assert 2 * (p & t).sum() / (p.sum() + t.sum()) > 0.9, level
        assert (p & t).sum() >= 0.99 * t.sum(), level
    assert result.missing == []
    l3 = result.levels["L1"]
    assert l3.present and l3.confidence > 0.7
    voxel_ml = np.prod(image.spacing) / 1000
    assert l3.volume_ml == pytest.approx((result.labels.array == 3).sum() * voxel_ml)
    assert abs(l3.volume_ml - (truth.array == 3).sum() * voxel_ml) / l3.volume_ml < 0.15
    kji = np.argwhere(truth.array == 3).mean(axis=0)
    assert np.linalg.norm(np.asarray(l3.centroid_ras) - image.index_to_ras(kji)) < 1.5
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_partial_field_of_view_reports_the_missing_levels():
    image, truth = oblique_spine(levels=range(3, 8))
    result = label_vertebrae(image, device="cpu", model=IntensityOracle())
    assert result.missing == ["T11", "T12"]
    assert [n for n, lv in result.levels.items() if lv.present] == ["L1", "L2", "L3", "L4", "L5"]
    assert not result.levels["T11"].present and result.levels["T11"].volume_ml == 0.0
    assert result.to_dict()["missing"] == ["T11", "T12"]


def test_inferior_margin_is_the_image_below_the_lowest_label():
    labels = np.zeros((3, 50, 4), np.uint8)
    labels[1, 10:31, 2] = 7                    # lowest labeled row 30: rows 31..49 below it
    assert inferior_margin_mm(labels, 1.5) == pytest.approx(19 * 1.5)
    assert inferior_margin_mm(np.zeros_like(labels), 1.5) is None


def test_a_field_of_view_ending_at_the_lowest_body_asks_to_check_the_names():
    image, _ = oblique_spine()                 # about 29 mm of image below L5
    full = label_vertebrae(image, device="cpu", model=IntensityOracle())
    assert full.inferior_margin_mm >= SACRUM_VIEW_MM and full.sacrum_in_view()
    assert full.sacrum_note() is None and full.notes() == [] and full.to_dict()["sacrum_note"] is None
    image, _ = oblique_spine(levels=range(1, 6), fov_rows=220)  # ends just below L3's body: L4, L5 and sacrum out
    cut = label_vertebrae(image, device="cpu", model=IntensityOracle())
    assert cut.inferior_margin_mm < SACRUM_VIEW_MM and not cut.sacrum_in_view()
    assert cut.notes()[-1] == cut.sacrum_note() == cut.to_dict()["sacrum_note"]
    assert cut.sacrum_note().startswith(f"The field of view ends {cut.inferior_margin_mm:.0f} mm below the "
                                        "lowest labeled body, so the sacrum")
    assert cut.to_dict()["inferior_margin_mm"] == pytest.approx(cut.inferior_margin_mm, abs=0.05)
    nothing = LabelingResult(None)
    assert not nothing.sacrum_in_view() and nothing.sacrum_note() is None   # nothing labeled: no margin to judge


def test_cancel_stops_with_cancelled():
    image, _ = oblique_spine()
    with pytest.raises(Cancelled):
        label_vertebrae(image, device="cpu", model=IntensityOracle(), cancel=lambda: True)


def test_tiles_cover_large_fields_of_view():
    assert tile_starts(200) == [-28]
    starts = tile_starts(600)
    assert starts[0] == 0 and starts[-1] == 600 - 256
    assert all(b - a <= 256 - 64 for a, b in zip(starts, starts[1:]))


def tiny_model_files(tmp_path):
    torch.manual_seed(0)
    config = NetConfig(depth=4, base=2)
    model = build_unet(config)
    weights = tmp_path / "tiny.safetensors"
    export_model(model.state_dict(), config.to_dict(), weights, {"date": "2026-11-22"})
    return weights


def test_model_round_trip_and_checksum_refusal(tmp_path):
    weights = tiny_model_files(tmp_path)
    model, manifest = load_model(weights)
    assert manifest["architecture"]["depth"] == 4 and manifest["input_spacing_mm"] == 1.5
    image, _ = oblique_spine()
    result = label_vertebrae(image, device="cpu", model=(model, manifest))
    assert result.labels.same_geometry(image, tol=1e-9)
    assert result.model["sha256"] == manifest["sha256"]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the manifest"):
        load_model(weights)


def test_missing_model_files_are_reported(tmp_path):
    with pytest.raises(ModelError, match="model weights not found"):
        load_model(tmp_path / "none.safetensors")
    weights = tiny_model_files(tmp_path)
    weights.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="manifest not found"):
        load_model(weights)


def test_bodies_found_only_in_part_are_named_with_a_caution_before_the_sacrum_one():
    volumes = {"T11": 2.1, "T12": 2.3, "L1": PARTIAL_BODY_ML, "L2": 30.0, "L3": 0.0}
    levels = {name: LevelResult(name, v, present=ml > 0, volume_ml=ml)
              for v, (name, ml) in enumerate(volumes.items(), start=1)}
    result = LabelingResult(None, levels, ["L3"], inferior_margin_mm=4.0)
    assert result.partial_levels() == ["T11", "T12"]          # 5 ml itself is not partial; L3 is missing
    assert result.partial_note().startswith("T11, T12 were found only in part (under 5 ml; a vertebral body "
                                            "holds about 15-45 ml): check their labels and names.")
    assert result.cautions() == [result.partial_note(), result.sacrum_note()]
    assert result.notes() == ["The vertebra labeling did not find L3 (outside the field of view, or missed by "
                              "the network)."] + result.cautions()
    assert result.to_dict()["partial_levels"] == ["T11", "T12"]
    assert result.to_dict()["partial_note"] == result.partial_note()
    assert result.to_dict()["cautions"] == result.cautions()
    one = LabelingResult(None, {"L2": LevelResult("L2", 4, True, volume_ml=1.0)}, inferior_margin_mm=50.0)
    assert one.partial_note().startswith("L2 was found only in part") and "check its labels" in one.partial_note()
    assert one.cautions() == [one.partial_note()]
    whole = LabelingResult(None, {"L2": LevelResult("L2", 4, True, volume_ml=30.0)}, inferior_margin_mm=50.0)
    assert whole.partial_levels() == [] and whole.partial_note() is None and whole.cautions() == []
