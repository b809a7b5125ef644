"""Static checks of the Slicer scripted modules (Slicer itself cannot run here).

For every module folder: the .ui parses and defines every ``self.ui.<name>`` the code uses,
nothing heavy is imported at file scope, the module metadata Slicer's generic tests need is
set, a Test class exists, the module CMakeLists lists every script and resource, and the
extension CMakeLists adds the module.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(p.parent.name for p in REPO.glob("*/CMakeLists.txt") if (p.parent / f"{p.parent.name}.py").exists())
#: Imports allowed at file scope of module code: Slicer's own and the standard library.
HEAVY = {"torch", "sklearn", "skfuzzy", "skops", "safetensors", "scipy", "SimpleITK", "matplotlib", "spinetumor"}


def module_python_files(name: str) -> list[Path]:
    folder = REPO / name
    return sorted(p for p in folder.rglob("*.py") if "Testing" not in p.parts)


def test_there_are_modules():
    assert "VertebraLabeling" in MODULES or not (REPO / "VertebraLabeling").exists()


@pytest.mark.parametrize("name", MODULES)
def test_ui_file_parses_and_defines_every_widget_used(name):
    ui_path = REPO / name / "Resources" / "UI" / f"{name}.ui"
    tree = ET.parse(ui_path)                       # raises on malformed XML
    defined = {w.get("name") for w in tree.iter("widget")} | {a.get("name") for a in tree.iter("action")}
    used = set()
    for path in module_python_files(name):
        used |= set(re.findall(r"self\.ui\.([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
    missing = sorted(used - defined)
    assert not missing, f"{name}: self.ui names missing in {ui_path.name}: {missing}"
    assert used, f"{name}: the widget never uses its .ui"


@pytest.mark.parametrize("name", MODULES)
def test_no_heavy_import_or_install_at_file_scope(name):
    for path in module_python_files(name):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for imported in names:
                    assert imported.split(".")[0] not in HEAVY, f"{path.name}: imports {imported} at file scope"
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                call = ast.unparse(node.value)
                assert "pip_install" not in call and "pip_ensure" not in call, f"{path.name}: installs at import"


@pytest.mark.parametrize("name", MODULES)
def test_module_metadata_and_test_class(name):
    source = (REPO / name / f"{name}.py").read_text()
    tree = ast.parse(source)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    for suffix in ("", "Widget", "Logic", "Test"):
        assert name + suffix in classes, f"{name}.py lacks class {name + suffix}"
    for attribute in ("title", "categories", "contributors", "helpText", "acknowledgementText", "dependencies"):
        assert f"self.parent.{attribute} =" in source, f"{name}: parent.{attribute} is not set"
    test_methods = [n.name for n in classes[name + "Test"].body if isinstance(n, ast.FunctionDef)]
    assert "runTest" in test_methods and any(m.startswith("test_") for m in test_methods)
    icon = REPO / name / "Resources" / "Icons" / f"{name}.png"
    assert icon.exists() and icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", MODULES)
def test_cmake_lists_every_script_and_resource(name):
    cmake = (REPO / name / "CMakeLists.txt").read_text()
    assert f"set(MODULE_NAME {name})" in cmake
    for path in module_python_files(name):
        relative = path.relative_to(REPO / name).as_posix()
        assert relative in cmake.replace("${MODULE_NAME}", name), f"{name}/CMakeLists.txt misses {relative}"
    for path in (REPO / name / "Resources").rglob("*"):
        if path.is_file():
            relative = path.relative_to(REPO / name).as_posix()
            assert relative in cmake.replace("${MODULE_NAME}", name), f"{name}/CMakeLists.txt misses {relative}"
    top = (REPO / "CMakeLists.txt").read_text()
    assert f"add_subdirectory({name})" in top


def test_extension_cmake_metadata():
    top = (REPO / "CMakeLists.txt").read_text()
    assert "project(SpineTumor)" in top
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert re.search(rf'set\({key} "[^"]+"\)', top), key
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in top
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in top
    assert (REPO / "Resources" / "Icons" / "SpineTumor.png").exists()
    assert (REPO / "LICENSE").read_text().startswith(" " * 33 + "Apache License")
