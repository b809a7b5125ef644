"""Shared pytest fixtures: paths to bundled test data and to ../shared/data when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_DATA = REPO / "Testing" / "Data"
SHARED_DATA = Path(os.environ.get("SPINETUMOR_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def test_data() -> Path:
    """The small real scans bundled under Testing/Data (always present)."""
    return TEST_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (the 12 labeled Chu cases and others); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available on this machine")
    return SHARED_DATA


@pytest.fixture(scope="session")
def _headless_slicer():
    """One headless Slicer session (scene, logics, slicer.modules shims) for the whole test run."""
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    from slicer_headless import create_headless_scene

    return create_headless_scene()


@pytest.fixture
def mrml_scene(_headless_slicer):
    """An empty MRML scene set as ``slicer.mrmlScene``; cleared after each test."""
    _headless_slicer.clear()
    yield _headless_slicer.scene
    _headless_slicer.clear()
