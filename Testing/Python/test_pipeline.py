"""The whole pipeline and its report: outputs in the input geometry, report schema, batch mode, errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from spinetumor import labels
from spinetumor.io import read_segmentation, read_volume, write_volume
from spinetumor.localization import localize_tumors
from spinetumor.phantom import generate
from spinetumor.pipeline import Analysis, tumor_entry, combined_labels, find_studies, study_name, write_analysis
from spinetumor.report import finding_sentence

MODELS = __import__("pathlib").Path(__file__).resolve().parents[2] / "spinetumor" / "models"
ALL_MODELS = all((MODELS / name).exists() for name in (
    "vertebra_labeling.safetensors", "tumor_rf.skops", "tumor_net.safetensors", "tumor_type_cnn.safetensors"))


def truth_analysis(seed: int = 11, tumor: str = "intradural-extramedullary") -> Analysis:
    """An Analysis built from a phantom's ground truth (no model needed)."""
    case = generate(seed, tumor=tumor)
    anatomy = case.anatomy.array
    canal = case.image.with_array(np.isin(anatomy, [labels.value("canal"), labels.value("cord"),
                                                    labels.value("cauda_equina"), 31, 32]).astype(np.uint8))
    cord = case.image.with_array(np.isin(anatomy, [labels.value("cord"), 31]).astype(np.uint8))
    locations = localize_tumors(case.tumor, case.vertebrae, canal, cord, instances=True)
    tumors = [tumor_entry(loc, t["type"], {name: float(name == t["type"]) for name in labels.TUMOR_TYPE_NAMES})
              for loc, t in zip(locations, case.truth["tumors"])]
    report = {"schema": "spinetumor-report/1", "spinetumor_version": "test", "created": "now",
              "input": {"name": "phantom", "path": "phantom", "size": "x", "spacing": "y", "orientation": "z"},
              "tumors": tumors, "vertebrae": [], "models": {}, "timings_s": {}, "notes": ["from ground truth"]}
    return Analysis(case.image, case.vertebrae, canal, cord, case.tumor, case.tumor.with_array(
        (case.tumor.array > 0).astype(np.float32)), report)


def test_write_analysis_outputs_share_the_input_geometry(tmp_path):
    analysis = truth_analysis()
    write_analysis(analysis, tmp_path)
    for name in ("vertebrae.nii.gz", "tumor.nii.gz", "tumor_probability.nii.gz", "canal.nii.gz", "cord.nii.gz"):
        assert read_volume(tmp_path / name, validate=False).same_geometry(analysis.image, tol=1e-4), name
    seg, segments = read_segmentation(tmp_path / "segmentation.seg.nrrd")
    assert seg.same_geometry(analysis.image, tol=1e-4)
    names = [s["name"] for s in segments]
    assert "Intradural-extramedullary tumor" in names and "Spinal cord" in names and "L1 vertebral body" in names
    np.testing.assert_array_equal(seg.array, combined_labels(analysis).array)


def test_reports_agree_with_each_other(tmp_path):
    analysis = truth_analysis()
    write_analysis(analysis, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["tumors"][0]["type"] == "intradural-extramedullary"
    assert set(report["tumors"][0]) >= {"type", "type_probabilities", "levels", "disc_levels", "epicenter_level",
                                        "volume_ml", "extent_mm", "centroid_ras", "canal_compromise_percent",
                                        "cautions"}
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert len(rows) == len(report["tumors"]) and rows[0]["type"] == "intradural-extramedullary"
    assert rows[0]["levels"] == " ".join(report["tumors"][0]["levels"])
    page = (tmp_path / "report.html").read_text()
    assert finding_sentence(report["tumors"][0]).split(" (")[0] in page
    assert page.count("data:image/png;base64,") >= 2          # overview + tumor slice (+ 3D when rendering works)


def test_finding_sentence_flags_disagreement():
    tumor = {"id": 1, "type": "extradural", "type_probabilities": {"extradural": 0.6}, "rule_type": "intramedullary",
             "types_agree": False, "levels": ["L2", "L3"], "disc_levels": ["L2-L3"], "epicenter_level": "L2",
             "volume_ml": 1.5, "extent_mm": {"superior_inferior": 20, "anterior_posterior": 10, "left_right": 8},
             "canal_compromise_percent": 35.0}
    sentence = finding_sentence(tumor)
    assert sentence.startswith("Tumor 1: extradural lesion (CNN probability 0.60; the geometric rule says "
                               "intramedullary — please review) at L2–L3")
    assert "L2-L3 disc space" in sentence and "35% of the canal" in sentence
    assert "Caution" not in sentence


def test_cautions_reach_the_sentence_and_the_csv(tmp_path):
    from spinetumor.report import csv_rows

    analysis = truth_analysis()
    tumor = analysis.report["tumors"][0]
    assert tumor["cautions"] == []                 # an intradural tumor of the phantom: nothing to caution
    tumor["cautions"] = ["it is centred on the L4-L5 disc space in front of the dural sac", "second"]
    sentence = finding_sentence(tumor)
    assert sentence.endswith(" Caution: it is centred on the L4-L5 disc space in front of the dural sac."
                             " Caution: second.")
    assert csv_rows(analysis.report)[0]["cautions"] == "it is centred on the L4-L5 disc space in front of the dural sac; second"


def test_batch_folder_lists_files_and_dicom_folders(tmp_path):
    case = generate(1, tumor="none")
    write_volume(case.image, tmp_path / "a.nii.gz")
    write_volume(case.image, tmp_path / "b.nrrd")
    (tmp_path / "notes.txt").write_text("not a study")
    (tmp_path / "empty").mkdir()
    assert [p.name for p in find_studies(tmp_path)] == ["a.nii.gz", "b.nrrd"]
    assert study_name(tmp_path / "a.nii.gz") == "a" and study_name(tmp_path / "scan.seg.nrrd") == "scan.seg"


def test_run_bad_input_is_one_line_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "spinetumor", "run", str(tmp_path / "missing.nii.gz"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"spinetumor run: error: {tmp_path / 'missing.nii.gz'}: no such file or folder"]
    assert not (tmp_path / "out").exists()


def test_run_prints_each_tumor_with_its_cautions_below_it():
    from spinetumor.cli import found_lines

    tumors = [{"id": 1, "type": "extradural", "levels": ["T10", "T11"], "volume_ml": 0.308, "cautions": ["a disc?"]},
              {"id": 2, "type": "extradural", "levels": [], "volume_ml": 0.255, "cautions": []}]
    assert found_lines(tumors).splitlines() == ["2 tumor(s) found", "  tumor 1: extradural at T10 T11, 0.31 mL",
                                                "    caution: a disc?", "  tumor 2: extradural at no labeled level, 0.26 mL"]
    assert found_lines([]) == "0 tumor(s) found"


def test_run_refuses_zero_threads_in_one_line(tmp_path):
    write_volume(generate(3, tumor="none").image, tmp_path / "case.nii.gz")
    result = subprocess.run([sys.executable, "-m", "spinetumor", "run", str(tmp_path / "case.nii.gz"),
                             "--out", str(tmp_path / "out"), "--threads", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["spinetumor run: error: --threads must be at least 1, got 0"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.skipif(not ALL_MODELS, reason="the shipped models are not all present")
def test_run_end_to_end_on_a_phantom(tmp_path):
    """`spinetumor run` on a phantom with an extradural tumor: every file, geometry, a sensible report."""
    case = generate(21, tumor="extradural")
    write_volume(case.image, tmp_path / "case.nii.gz")
    result = subprocess.run([sys.executable, "-m", "spinetumor", "run", str(tmp_path / "case.nii.gz"),
                             "--out", str(tmp_path / "out"), "--progress", "none", "--threads", "1"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    assert read_volume(out / "vertebrae.nii.gz", validate=False).same_geometry(case.image, tol=1e-4)
    assert set(report["timings_s"]) >= {"reading", "labeling", "canal_cord", "segmentation", "classification"}
    net_manifest = json.loads((MODELS / "tumor_net.json").read_text())
    assert report["models"]["tumor_network"]["sha256"] == net_manifest["sha256"]
    assert report["sacrum_in_view"] is True and not any("sacrum" in note for note in report["notes"])
    assert report["partial_levels"] == [] and not any("found only in part" in note for note in report["notes"])
    for tumor in report["tumors"]:
        assert tumor["type"] in labels.TUMOR_TYPE_NAMES
        assert abs(sum(tumor["type_probabilities"].values()) - 1) < 1e-6
        assert all(level in labels.LEVEL_NAMES + ("T10", "S1") for level in tumor["levels"])


@pytest.mark.slow
@pytest.mark.skipif(not ALL_MODELS, reason="the shipped models are not all present")
def test_batch_loads_the_models_once_and_reports_every_study(tmp_path, monkeypatch):
    """A folder of two phantoms and a broken file: a summary row each, the broken one with its error."""
    from spinetumor.labeling import model as labeling_model
    from spinetumor.pipeline import run_batch

    studies = tmp_path / "studies"
    studies.mkdir()
    write_volume(generate(21, tumor="extradural").image, studies / "a.nii.gz")
    write_volume(generate(3, tumor="none").image, studies / "b.nrrd")
    (studies / "broken.nii.gz").write_bytes(b"not an image")
    loads = []
    real_load = labeling_model.load_model
    monkeypatch.setattr(labeling_model, "load_model", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    summary = run_batch(studies, tmp_path / "out", device="cpu")
    assert loads == [1]
    rows = list(csv.DictReader(summary.open()))
    assert {r["study"] for r in rows} == {"a", "b", "broken"}
    assert [r["status"] for r in rows if r["study"] == "b"] == ["ok"]
    assert {r["sacrum_in_view"] for r in rows if r["study"] in ("a", "b")} == {"yes"}   # phantoms show the sacrum
    assert {r["partial_levels"] for r in rows if r["study"] in ("a", "b")} == {""}      # and whole bodies
    assert all(r["status"] == "ok" for r in rows if r["study"] == "a")
    broken = [r["status"] for r in rows if r["study"] == "broken"]
    assert len(broken) == 1 and broken[0].startswith("error: ") and "broken.nii.gz" in broken[0]
    for name in ("a", "b"):
        report = json.loads((tmp_path / "out" / name / "report.json").read_text())
        assert report["input"]["name"].endswith(name + (".nii.gz" if name == "a" else ".nrrd"))
        assert ("tumor_type" in report["models"]) == bool(report["tumors"])
        tumor_rows = [r for r in rows if r["study"] == name and r["id"]]
        assert [r["cautions"] for r in tumor_rows] == ["; ".join(t["cautions"]) for t in report["tumors"]]

