"""A Slicer MRML scene without the Slicer application, for tests that run under plain pytest.

The ``slicer-core`` wheel ships MRML, the module logics and a copy of ``slicer.util``, but
no application: it sets neither ``slicer.mrmlScene`` nor ``slicer.modules``. Some
``slicer.util`` helpers (``getNode``, ``arrayFromSegmentBinaryLabelmap``,
``updateSegmentBinaryLabelmapFromArray``) look those up, so :func:`create_headless_scene`
builds what a running Slicer would have: a scene, an application logic, the module
logics the project uses set on that scene, ``slicer.mrmlScene`` and
``slicer.modules.<name>.logic()``. Qt, rendering and the terminology logic (which needs
Slicer's share folder) are left out.
"""

from __future__ import annotations

import types

#: ``slicer.modules`` name -> (module name the application logic knows, logic class in ``slicer``).
#: The order matters: colors first (others ask for the default color tables), markups
#: before anything that reads or writes markups (its storage nodes are registered by the logic).
LOGIC_CLASSES = {
    "colors": ("Colors", "vtkSlicerColorLogic"),
    "volumes": ("Volumes", "vtkSlicerVolumesLogic"),
    "segmentations": ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
    "subjecthierarchy": ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
    "markups": ("Markups", "vtkSlicerMarkupsLogic"),
    "tables": ("Tables", "vtkSlicerTablesLogic"),
    "models": ("Models", "vtkSlicerModelsLogic"),
}


class HeadlessSlicer:
    """The scene, application logic and module logics of one headless session."""

    def __init__(self, scene, app_logic, logics: dict):
        self.scene = scene
        self.app_logic = app_logic
        self.logics = logics

    def logic(self, name: str):
        """The logic of module ``name`` (a key of :data:`LOGIC_CLASSES`)."""
        return self.logics[name]

    def clear(self) -> None:
        """Remove every node but the scene's defaults (color tables, singletons), as between tests."""
        self.scene.Clear(False)


def _set_empty_home(app_logic) -> None:
    """Give the application logic an empty Slicer home, so the colors logic finds no files.

    Without a home the colors logic logs an error; with an empty ``share/ColorFiles``
    it quietly keeps its built-in (procedural and generic) color tables.
    """
    import tempfile
    from pathlib import Path

    home = Path(tempfile.mkdtemp(prefix="slicer-headless-"))
    (home / "share" / "ColorFiles").mkdir(parents=True)
    app_logic.SetHomeDirectory(str(home))
    app_logic.SetShareDirectory("share")


class _ModuleShim:
    """Stands in for ``slicer.modules.<name>``: only ``logic()`` is needed by ``slicer.util``."""

    def __init__(self, name: str, logic):
        self.name = name
        self._logic = logic

    def logic(self):
        return self._logic


def create_headless_scene() -> HeadlessSlicer:
    """Create a scene with its logics and make it ``slicer.mrmlScene`` (about 0.03 s).

    Calling it again replaces the previous session's scene and shims.
    """
    import slicer

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    _set_empty_home(app_logic)
    logics = {}
    for name, (module_name, class_name) in LOGIC_CLASSES.items():
        logic = getattr(slicer, class_name)()
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(module_name, logic)
        logics[name] = logic
    slicer.mrmlScene = scene
    modules = getattr(slicer, "modules", None)
    if not isinstance(modules, types.SimpleNamespace):
        modules = types.SimpleNamespace()
        slicer.modules = modules
    for name, logic in logics.items():
        setattr(modules, name, _ModuleShim(name, logic))
    return HeadlessSlicer(scene, app_logic, logics)
