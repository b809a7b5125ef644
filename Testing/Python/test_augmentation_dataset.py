"""Tumor augmentation dataset writing (deterministic, resumable) and the ``spinetumor augment`` command."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from spinetumor import phantom
from spinetumor.augmentation.compartments import check_compartment, compartments_from_anatomy
from spinetumor.augmentation.dataset import MANIFEST_COLUMNS, TargetSpec, augment_dataset, source_from_phantom
from spinetumor.cli import main
from spinetumor.io import read_volume, write_volume
from spinetumor.volume import to_canonical


@pytest.fixture(scope="module")
def free_case():
    return phantom.generate(5, tumor="none", fov="full")


@pytest.fixture(scope="module")
def patch():
    return source_from_phantom(2, "intradural-extramedullary")


def _run(free_case, patch, out, **kw):
    spec = TargetSpec("free5", free_case.image, free_case.vertebrae, free_case.anatomy)
    return augment_dataset([patch], [spec], out, per_slice=2, rotations=1, seed=7, **kw)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_dataset_is_deterministic_resumable_and_exact(tmp_path, free_case, patch):
    a = _run(free_case, patch, tmp_path / "a")
    b = _run(free_case, patch, tmp_path / "b")
    manifest_a = (tmp_path / "a" / "manifest.csv").read_text()
    assert manifest_a == (tmp_path / "b" / "manifest.csv").read_text()
    rows = _rows(tmp_path / "a" / "manifest.csv")
    assert a["written"] == b["written"] == len(rows) >= 4
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    assert {r["rotation_deg"] != "0.0" for r in rows} == {True, False}
    comp = compartments_from_anatomy(to_canonical(free_case.anatomy)[0].array)
    canon = to_canonical(free_case.image)[0]
    for row in rows:
        image_a = read_volume(tmp_path / "a" / row["image"], validate=False)   # one-slice volumes
        image_b = read_volume(tmp_path / "b" / row["image"], validate=False)
        mask = read_volume(tmp_path / "a" / row["tumor"], validate=False)
        vert = read_volume(tmp_path / "a" / row["vertebrae"], validate=False)
        assert np.array_equal(image_a.array, image_b.array)
        assert mask.same_geometry(image_a) and vert.same_geometry(image_a)
        assert row["tumor_type"] == "intradural-extramedullary" and row["seed"] == "7"
        assert float(row["position_mm"]) >= 0 and row["level"]
        k = int(row["slice"])
        # a one-slice volume at the target slice's physical position
        assert np.allclose(image_a.origin, canon.index_to_lps(np.array([k, 0.0, 0.0])))
        if row["rotation_deg"] == "0.0":
            assert check_compartment(mask.array[0], comp.slice(k), "intradural-extramedullary")
    # resume: a missing file is rewritten, everything else is skipped, the manifest is unchanged
    victim = tmp_path / "a" / rows[1]["image"]
    victim.unlink()
    again = _run(free_case, patch, tmp_path / "a")
    assert again["written"] == 1 and again["skipped_existing"] == len(rows) - 1
    assert victim.exists()
    assert (tmp_path / "a" / "manifest.csv").read_text() == manifest_a
    # an interrupted manifest (a partial last line) is repaired
    with open(tmp_path / "a" / "manifest.csv", "a") as handle:
        handle.write("broken,2d")
    _run(free_case, patch, tmp_path / "a")
    assert (tmp_path / "a" / "manifest.csv").read_text() == manifest_a


def test_cli_help_documents_augment(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["augment", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--source-image", "--source-tumor", "--source-type", "--phantom-source", "--targets",
                   "--out", "--per-slice", "--mode", "--rotations", "--seed", "--progress"):
        assert option in text


def test_cli_bad_input_exits_2(tmp_path, capsys):
    assert main(["augment", "--targets", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"),
                 "--phantom-source", "1"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "t").mkdir()
    assert main(["augment", "--targets", str(tmp_path / "t"), "--out", str(tmp_path / "o"),
                 "--phantom-source", "1"]) == 2
    assert "no target images" in capsys.readouterr().err
    lonely = tmp_path / "lonely_t2.nii.gz"
    write_volume(phantom.generate(1, tumor="none").image, lonely)
    assert main(["augment", "--targets", str(lonely), "--out", str(tmp_path / "o"), "--phantom-source", "1"]) == 2
    assert "lonely_vertebrae.nii.gz" in capsys.readouterr().err
    (tmp_path / "lonely_vertebrae.nii.gz").write_bytes((lonely).read_bytes())
    assert main(["augment", "--targets", str(lonely), "--out", str(tmp_path / "o")]) == 2
    assert "a source is needed" in capsys.readouterr().err
    assert main(["augment", "--targets", str(lonely), "--out", str(tmp_path / "o"),
                 "--source-image", str(lonely)]) == 2
    assert "--source-tumor and --source-type" in capsys.readouterr().err
    assert main(["augment", "--targets", str(lonely), "--out", str(tmp_path / "o"), "--phantom-source", "1",
                 "--per-slice", "0"]) == 2
    assert "--per-slice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["augment", "--targets", str(lonely), "--out", "o", "--phantom-source", "1", "--mode", "4d"])
    assert exit_info.value.code == 2


@pytest.fixture(scope="module")
def dataset_3d(tmp_path_factory, free_case, patch):
    out = tmp_path_factory.mktemp("aug3d")
    spec = TargetSpec("free5", free_case.image, free_case.vertebrae, free_case.anatomy)
    summary = augment_dataset([patch], [spec], out, per_slice=1, mode="3d", seed=3)
    assert summary["samples"] == 1
    return out


def test_trainers_read_the_3d_samples_of_a_dataset(dataset_3d):
    from spinetumor.augmentation.dataset import read_training_cases
    from spinetumor.classification.train import augmented_tumors
    from spinetumor.segmentation.train import augmented_cases

    (row,) = _rows(dataset_3d / "manifest.csv")
    (case,) = list(read_training_cases([dataset_3d]))
    tumor = read_volume(dataset_3d / row["tumor"], validate=False)
    assert case.id == row["id"] and case.tumor_type == "intradural-extramedullary"
    assert np.array_equal(case.tumor.array, tumor.array) and case.tumor.same_geometry(tumor)
    assert case.canal.array.any() and case.canal.same_geometry(case.image)
    # the inserted tumor lies in the sac the trainers see (its compartment)
    inside = (case.canal.array > 0)[case.tumor.array > 0].mean()
    assert inside > 0.5
    (prep,) = augmented_cases([dataset_3d])
    assert prep.kind == "intradural-extramedullary" and prep.name == row["id"]
    assert int(prep.truth.sum()) == int(tumor.array.sum())
    (extra,) = augmented_tumors([dataset_3d])
    assert extra[4] == "intradural-extramedullary" and extra[5] == row["id"]


def test_trainers_refuse_folders_that_are_not_3d_datasets(tmp_path, free_case, patch):
    from spinetumor.augmentation.dataset import read_training_cases
    from spinetumor.io import InputError

    with pytest.raises(InputError, match="not an augmented dataset"):
        list(read_training_cases([tmp_path]))
    spec = TargetSpec("free5", free_case.image, free_case.vertebrae, free_case.anatomy)
    augment_dataset([patch], [spec], tmp_path / "flat", per_slice=1, mode="2d", seed=3)
    with pytest.raises(InputError, match="no 3D samples"):
        list(read_training_cases([tmp_path / "flat"]))


def test_cli_train_segmentation_documents_extra(capsys):
    with pytest.raises(SystemExit):
        main(["train", "segmentation", "--help"])
    assert "--extra DATASET" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "classification", "--help"])
    assert "--extra DATASET" in capsys.readouterr().out


def test_cli_train_with_a_folder_that_is_not_a_dataset_exits_2(tmp_path, capsys):
    code = main(["train", "segmentation", "--out", str(tmp_path / "rf"), "--cases", "4", "--extra", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an augmented dataset (no manifest.csv)" in err[0]
    assert not (tmp_path / "rf" / "tumor_rf.skops").exists()


def test_cli_train_classification_trains_on_the_extra_dataset(dataset_3d, tmp_path, monkeypatch):
    import spinetumor.classification.train as cls_train

    seen = {}

    def fake_train(out, config, **kwargs):
        seen.update(kwargs)
        return {"validation_calibrated": {"accuracy": 1.0}, "temperature": 1.0}

    monkeypatch.setattr(cls_train, "train", fake_train)
    code = main(["train", "classification", "--out", str(tmp_path / "cnn"), "--extra", str(dataset_3d)])
    assert code == 0
    (extra,) = seen["extra_cases"]
    (row,) = _rows(dataset_3d / "manifest.csv")
    assert extra[4] == "intradural-extramedullary" and extra[5] == row["id"]
