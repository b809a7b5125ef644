"""Progress reporting, cancellation, and background jobs as Slicer's modules use them."""

from __future__ import annotations

import time

import pytest

from spinetumor.jobs import BackgroundJob
from spinetumor.progress import Cancelled, ConsoleProgress, check_cancel, parse_progress_line, sub_progress


def test_json_progress_lines_round_trip(capsys):
    with ConsoleProgress("json") as progress:
        progress(0.25, "labeling")
    line = capsys.readouterr().out.strip()
    assert parse_progress_line(line) == (0.25, "labeling")
    assert parse_progress_line("some other output") is None


def test_sub_progress_maps_stage_range():
    seen = []
    stage = sub_progress(lambda f, m: seen.append((round(f, 3), m)), 0.5, 0.75)
    stage(0.0, "a")
    stage(1.0, "b")
    assert seen == [(0.5, "a"), (0.75, "b")]


def test_check_cancel_raises_only_when_asked():
    check_cancel(None)
    check_cancel(lambda: False)
    with pytest.raises(Cancelled):
        check_cancel(lambda: True)


def test_background_job_reports_success_and_output():
    job = BackgroundJob(["--version"]).start()
    state = job.wait(timeout=60)
    assert state.finished and state.returncode == 0 and state.error == ""
    assert any(line.startswith("spinetumor ") for line in state.log)


def test_background_job_reports_the_one_line_error(tmp_path):
    job = BackgroundJob(["info", tmp_path / "missing.nii.gz"]).start()
    state = job.wait(timeout=60)
    assert state.returncode == 2
    assert state.error.startswith("spinetumor info: error:") and "no such file" in state.error


def test_background_job_can_be_cancelled(tmp_path):
    script = "import time, sys; print('started', flush=True); time.sleep(60)"
    job = BackgroundJob([], env={})
    job.command = [job.command[0], "-c", script]
    job.start()
    deadline = time.time() + 30
    while "started" not in job.poll().log and time.time() < deadline:
        time.sleep(0.05)
    job.cancel()
    state = job.wait(timeout=30)
    assert state.finished and state.returncode != 0 and state.error == "cancelled"


def test_dependency_check_names_what_is_missing():
    from spinetumor.slicer_support import missing_packages

    assert missing_packages(["numpy", "json"]) == []
    assert missing_packages(["numpy", "surely_not_installed_pkg"]) == ["surely_not_installed_pkg"]


def test_background_job_environment_finds_the_engine(tmp_path):
    """A job started the way Slicer widgets start it imports spinetumor from this checkout."""
    from spinetumor.slicer_support import engine_environment

    job = BackgroundJob(["--version"], env=engine_environment())
    job.start()
    state = job.wait(timeout=60)
    assert state.returncode == 0
    root = engine_environment()["PYTHONPATH"].split(":")[0]
    assert (__import__("pathlib").Path(root) / "spinetumor" / "__init__.py").exists()
