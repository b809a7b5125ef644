"""``spinetumor label`` and ``spinetumor evaluate labels``: outputs, geometry, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinetumor.cli import main
from spinetumor.io import read_segmentation, read_volume, write_volume
from spinetumor.volume import Volume


def small_labels():
    arr = np.zeros((12, 40, 30), np.uint8)
    for level in range(1, 8):
        arr[2:10, 2 + (level - 1) * 5:5 + (level - 1) * 5, 5:20] = level
    direction = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    return Volume(arr, (1.0, 1.2, 3.0), (5.0, -7.0, 11.0), direction)


def one_error_line(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"spinetumor {command}: error:"), err
    return err[0]


def test_label_missing_input_exits_2_with_one_line(tmp_path, capsys):
    assert main(["label", str(tmp_path / "absent.nii.gz"), "--out", str(tmp_path / "out")]) == 2
    assert "no such file" in one_error_line(capsys, "label")
    assert not (tmp_path / "out").exists()


def test_label_unreadable_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    assert main(["label", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "not a readable image" in one_error_line(capsys, "label")


def test_label_with_altered_model_exits_2(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from spinetumor.labeling.model import export_model
    from spinetumor.labeling.network import NetConfig, build_unet

    torch.manual_seed(0)
    config = NetConfig(depth=4, base=2)
    weights = tmp_path / "m.safetensors"
    export_model(build_unet(config).state_dict(), config.to_dict(), weights, {})
    image = tmp_path / "image.nii.gz"
    write_volume(small_labels().with_array(small_labels().array.astype(np.float32) * 10), image)
    manifest = json.loads(weights.with_suffix(".json").read_text())
    manifest["sha256"] = "0" * 64
    weights.with_suffix(".json").write_text(json.dumps(manifest))
    assert main(["label", str(image), "--out", str(tmp_path / "out"), "--model", str(weights)]) == 2
    assert "does not match the manifest" in one_error_line(capsys, "label")


def test_label_writes_three_files_in_the_input_geometry(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from spinetumor.labeling.model import export_model
    from spinetumor.labeling.network import NetConfig, build_unet

    torch.manual_seed(0)
    config = NetConfig(depth=4, base=2)
    weights = tmp_path / "m.safetensors"
    export_model(build_unet(config).state_dict(), config.to_dict(), weights, {"date": "2026-11-22"})
    volume = small_labels()
    image = tmp_path / "image.nii.gz"
    write_volume(volume.with_array(volume.array.astype(np.float32) * 10 + 1), image)
    out = tmp_path / "out"
    assert main(["label", str(image), "--out", str(out), "--model", str(weights), "--device", "cpu"]) == 0
    labels = read_volume(out / "vertebrae.nii.gz", validate=False)
    assert labels.same_geometry(read_volume(image), tol=1e-5)
    seg, segments = read_segmentation(out / "vertebrae.seg.nrrd")
    assert seg.same_geometry(labels, tol=1e-5)
    assert np.array_equal(seg.array, labels.array)
    report = json.loads((out / "vertebrae.json").read_text())
    assert [lv["name"] for lv in report["levels"]] == ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    assert set(report["missing"]) == {lv["name"] for lv in report["levels"] if not lv["present"]}
    assert report["model"]["sha256"] == json.loads(weights.with_suffix(".json").read_text())["sha256"]
    assert report["partial_levels"] == [lv["name"] for lv in report["levels"] if lv["present"] and lv["volume_ml"] < 5]
    printed = capsys.readouterr().out
    assert "vertebrae.json" in printed
    for note in (report["partial_note"], report["sacrum_note"]):
        assert note is None or f"note: {note}" in printed


def test_evaluate_labels_perfect_and_shifted(tmp_path, capsys):
    truth = small_labels()
    write_volume(truth, tmp_path / "truth.nii.gz")
    assert main(["evaluate", "labels", str(tmp_path / "truth.nii.gz"), str(tmp_path / "truth.nii.gz"),
                 "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "identification rate 1.000" in out and "all levels right: yes" in out
    assert out.count(" 1.000 ") == 7
    shifted = truth.array.copy()
    shifted[shifted > 0] += 1
    shifted[shifted == 8] = 0                  # every level named one too low: nothing right
    write_volume(truth.with_array(shifted), tmp_path / "pred.nii.gz")
    assert main(["evaluate", "labels", str(tmp_path / "pred.nii.gz"), str(tmp_path / "truth.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert "all levels right: no" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["all_levels_right"] is True


def test_evaluate_labels_missing_file_exits_2(tmp_path, capsys):
    write_volume(small_labels(), tmp_path / "truth.nii.gz")
    assert main(["evaluate", "labels", str(tmp_path / "nope.nii.gz"), str(tmp_path / "truth.nii.gz")]) == 2
    one_error_line(capsys, "evaluate")


def test_train_labeling_is_a_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "labeling", "--help"])
    assert exit_info.value.code == 0
    assert "--resume" in capsys.readouterr().out


def test_train_labeling_from_a_pair_without_its_part_exits_2_before_any_work(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from spinetumor.labeling.model import FOUND_AND_NAMED, export_model, found_and_named
    from spinetumor.labeling.network import NetConfig, build_unet

    torch.manual_seed(0)
    config = NetConfig(depth=4, base=2)
    weights = tmp_path / "pair.safetensors"
    export_model(found_and_named(build_unet(config), build_unet(config)).state_dict(), config.to_dict(), weights, {},
                 FOUND_AND_NAMED)
    out = tmp_path / "run"
    assert main(["train", "labeling", "--out", str(out), "--init", str(weights), "--chu-dir", str(tmp_path)]) == 2
    assert "holds two networks" in one_error_line(capsys, "train")
    assert not out.exists()                                    # nothing written
