"""The command line: help, version, info, and one clear line with exit code 2 for bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

import spinetumor


def run_cli(*args, cwd=None):
    """Run ``python -m spinetumor`` in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "spinetumor", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("phantom", "info"):
        assert command in result.stdout


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"spinetumor {spinetumor.__version__}"


def test_info_describes_a_real_pir_scan(test_data):
    result = run_cli("info", test_data / "tptbox_sample_mri" / "sub-mri_label-6_T2w.nii.gz")
    assert result.returncode == 0, result.stderr
    assert "68 x 52 x 67 voxels" in result.stdout
    assert "1.5 x 1.5 x 1.5 mm" in result.stdout
    assert "orientation:  PIR" in result.stdout
    assert "min 0, max 387" in result.stdout


@pytest.mark.parametrize("kind, message", [
    ("missing", "no such file or folder"),
    ("text", "not a readable image"),
    ("2d", "3D volume is needed"),
    ("empty", "is empty"),
    ("nan", "no finite values"),
    ("emptydir", "no DICOM series"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, kind, message):
    path = tmp_path / {"missing": "none.nii.gz", "text": "a.nii.gz", "2d": "b.nii.gz", "empty": "c.nrrd",
                       "nan": "d.nrrd", "emptydir": "dicom"}[kind]
    if kind == "text":
        path.write_text("not an image")
    elif kind == "2d":
        sitk.WriteImage(sitk.Image(30, 20, sitk.sitkUInt8), str(path))
    elif kind == "empty":
        sitk.WriteImage(sitk.Image(5, 5, 5, sitk.sitkFloat32), str(path))
    elif kind == "nan":
        sitk.WriteImage(sitk.GetImageFromArray(np.full((3, 3, 3), np.nan, np.float32)), str(path))
    elif kind == "emptydir":
        path.mkdir()
    result = run_cli("info", path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spinetumor info: error: ") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_option_is_a_usage_error():
    result = run_cli("info")
    assert result.returncode == 2 and "usage:" in result.stderr
