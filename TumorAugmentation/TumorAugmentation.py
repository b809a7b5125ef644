"""Tumor Augmentation: insert a tumor along the CSF of tumor-free scans to build training data.

The module file is thin: scene work lives in ``TumorAugmentationLib`` (Qt-free, tested under
pytest), the algorithm in the ``spinetumor`` engine (``spinetumor augment``). Preview inserts
one sample into the scene in this process; Run writes the whole dataset in a background
process, so Slicer stays responsive and Cancel leaves the scene as it was.
"""

from typing import Annotated

from pathlib import Path

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import Choice, Minimum, WithinRange, parameterNodeWrapper
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from TumorAugmentationLib import FILLS, MODES, SOURCE_KINDS, TARGET_KINDS, TUMOR_TYPES

#: Import names the augmentation engine needs beyond what Slicer bundles (installed on first use).
ENGINE_PACKAGES = ("scipy",)


#
# TumorAugmentation
#

class TumorAugmentation(ScriptedLoadableModule):
    """Module metadata (see the Slicer scripted module template)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Tumor Augmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation.SpineTumor")]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["SpineTumor developers"]
        self.parent.helpText = _(
            "Builds training data for tumor segmentation: cuts a tumor out of a source scan (a segment, a "
            "saved source folder or a synthetic phantom), glides it along the CSF of tumor-free target scans "
            "from T11 to L5, keeps it in its compartment (intramedullary, intradural-extramedullary, "
            "extradural), and writes images, tumor masks and a manifest. Targets need vertebra labels "
            "(run Vertebra Labeling first). Preview shows one sample in the scene. "
            "See the <a href=\"https://github.com/SpineTumor/SlicerSpineTumor#readme\">README</a>.")
        self.parent.acknowledgementText = _(
            "The augmentation follows Pal et al., automatic vertebra labeling and tumor localization in lumbar "
            "spine T2 MRI (section III.A: tumors inserted along the CSF, rotated, thick slices filled).")
        slicer.app.connect("startupCompleted()", registerTerminology)


def registerTerminology() -> None:
    """Make Slicer know SpineTumor's segment names and codes (shared with the other modules)."""
    from spinetumor.slicer_support import register_terminology

    register_terminology()


#
# Parameter node
#

@parameterNodeWrapper
class TumorAugmentationParameterNode:
    """The module's state, saved with the scene.

    sourceKind - "segment" (a segment over sourceVolume), "folder" (a saved source) or "phantom".
    tumorType - the source tumor's compartment.
    targetKind - "scene" (the checked volumes, with vertebra labels) or "folder".
    perSlice, mode, rotations, fill, seed - the ``spinetumor augment`` options.
    previewVolume, previewSegmentation - the last preview's nodes, refilled by the next preview.
    """

    sourceKind: Annotated[str, Choice(list(SOURCE_KINDS))] = "segment"
    sourceVolume: vtkMRMLScalarVolumeNode
    sourceFolder: Path
    phantomSeed: Annotated[int, Minimum(0)] = 0
    tumorType: Annotated[str, Choice(list(TUMOR_TYPES))] = "intradural-extramedullary"
    targetKind: Annotated[str, Choice(list(TARGET_KINDS))] = "scene"
    targetFolder: Path
    perSlice: Annotated[int, WithinRange(1, 500)] = 20
    mode: Annotated[str, Choice(list(MODES))] = "2d"
    rotations: Annotated[int, WithinRange(0, 10)] = 0
    fill: Annotated[str, Choice(list(FILLS))] = "default"
    seed: Annotated[int, Minimum(0)] = 0
    outputFolder: Path
    previewVolume: vtkMRMLScalarVolumeNode
    previewSegmentation: vtkMRMLSegmentationNode


def _isSet(path) -> bool:
    """A path parameter is unset when empty (Path("") reads ".")."""
    return path is not None and str(path) not in ("", ".")


#
# Widget
#

class TumorAugmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Source, targets and parameters; Preview adds one sample to the scene, Run writes the dataset
    in the background (``self.support``, a ``ModuleWidgetSupport``, turns Run into Cancel)."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.support = None

    def setup(self) -> None:
        from spinetumor.slicer_support import ModuleWidgetSupport

        ScriptedLoadableModuleWidget.setup(self)
        self.logic = TumorAugmentationLogic()
        self.support = ModuleWidgetSupport(self, "UI/TumorAugmentation.ui", _("Run"), defaultVolume="sourceVolume",
                                           updateButtons=self._updateButtons, enableInputs=self._enableInputs)

        self.ui.applyButton.connect("clicked(bool)", self.onRunButton)
        self.ui.previewButton.connect("clicked(bool)", self.onPreviewButton)
        self.ui.saveSourceButton.connect("clicked(bool)", self.onSaveSourceButton)
        self.ui.sourceSegmentSelector.connect("currentSegmentChanged(QString)", self.onSourceSegmentChanged)
        self.ui.targetVolumesSelector.connect("checkedNodesChanged()", self._updateButtons)

        self.support.initializeParameterNode()

    def cleanup(self) -> None:
        if self.support is not None:
            self.support.cleanup()

    def enter(self) -> None:
        self.support.initializeParameterNode()

    def exit(self) -> None:
        self.support.releaseParameterNode()

    def _updateButtons(self, *unused) -> None:
        """Show the inputs of the chosen source and target kinds; enable what can run."""
        p = self.support.parameterNode
        if p is None:
            return
        busy = self.support.jobRunning
        for kind, widgets in (("segment", (self.ui.sourceVolumeSelector, self.ui.sourceSegmentSelector,
                                           self.ui.saveSourceButton)),
                              ("folder", (self.ui.sourceFolderPathLineEdit,)),
                              ("phantom", (self.ui.phantomSeedSpinBox,))):
            for widget in widgets:
                widget.visible = p.sourceKind == kind
        self.ui.targetVolumesSelector.visible = p.targetKind == "scene"
        self.ui.targetFolderPathLineEdit.visible = p.targetKind == "folder"
        hasSource = {"segment": bool(p.sourceVolume and self.ui.sourceSegmentSelector.currentSegmentID()),
                     "folder": _isSet(p.sourceFolder), "phantom": True}[p.sourceKind]
        hasTargets = bool(self._checkedTargets()) if p.targetKind == "scene" else _isSet(p.targetFolder)
        canRun = hasSource and hasTargets and _isSet(p.outputFolder)
        self.ui.applyButton.enabled = busy or canRun
        idleTip = _("Write the augmented dataset") if canRun else _("Choose a source, targets and an output folder")
        self.ui.applyButton.toolTip = _("Stop writing the dataset") if busy else idleTip
        self.ui.previewButton.enabled = not busy and hasSource and bool(self._checkedTargets())
        self.ui.saveSourceButton.enabled = not busy and hasSource

    def _enableInputs(self, enabled: bool) -> None:
        for widget in (self.ui.sourceCollapsibleButton, self.ui.targetsCollapsibleButton,
                       self.ui.parametersCollapsibleButton):
            widget.enabled = enabled

    def _checkedTargets(self) -> list:
        return list(self.ui.targetVolumesSelector.checkedNodes())

    def _source(self):
        p = self.support.parameterNode
        return self.logic.source(p.sourceKind, p.tumorType, p.sourceVolume,
                                 self.ui.sourceSegmentSelector.currentNode(),
                                 self.ui.sourceSegmentSelector.currentSegmentID(),
                                 p.sourceFolder if _isSet(p.sourceFolder) else None, p.phantomSeed)

    def _parameters(self):
        p = self.support.parameterNode
        return self.logic.parameters(p.perSlice, p.mode, p.rotations, p.fill, p.seed)

    def onSourceSegmentChanged(self, segmentId) -> None:
        """Pick the tumor type a segment's name spells (e.g. "extradural")."""
        guessed = self.logic.guessTumorType(self.ui.sourceSegmentSelector.currentNode(), segmentId)
        if guessed and self.support.parameterNode:
            self.support.parameterNode.tumorType = guessed
        self._updateButtons()

    # --- preview in this process ---

    def onPreviewButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("The preview failed."), waitCursor=True):
            from spinetumor.slicer_support import ensure_dependencies

            if not ensure_dependencies(ENGINE_PACKAGES):
                return
            p = self.support.parameterNode
            targets = self._checkedTargets()
            if not targets:
                raise ValueError(_("Check a target volume in the scene to preview on."))
            nodes = self.logic.preview(self._source(), targets[0], self._parameters(),
                                       p.previewVolume, p.previewSegmentation)
            p.previewVolume, p.previewSegmentation = nodes.volume, nodes.segmentation
            slicer.util.setSliceViewerLayers(background=nodes.volume, fit=True)
            self.ui.statusLabel.text = _("Preview at {level}, {position:.0f} mm along the CSF.").format(
                level=nodes.result.level or "-", position=nodes.result.position_mm)

    def onSaveSourceButton(self) -> None:
        import qt

        folder = qt.QFileDialog.getExistingDirectory(
            slicer.util.mainWindow(), _("Folder to save the tumor source in"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("The tumor source could not be saved."), waitCursor=True):
            saved = self.logic.saveSource(self._source(), folder)
            self.ui.statusLabel.text = _("Tumor source saved in {folder}.").format(folder=saved)

    # --- the dataset in a background process ---

    def onRunButton(self) -> None:
        """Run writes the dataset; while it runs the same button cancels it."""
        if self.support.jobRunning:
            self.support.cancelJob()
            return
        with slicer.util.tryWithErrorDisplay(_("Tumor augmentation could not start."), waitCursor=True):
            from spinetumor.slicer_support import ensure_dependencies

            if not ensure_dependencies(ENGINE_PACKAGES):
                return
            p = self.support.parameterNode
            targetFolder = p.targetFolder if p.targetKind == "folder" else None
            outputFolder = p.outputFolder
            workFolder, arguments = self.logic.prepareJob(
                self._source(), outputFolder, self._parameters(),
                self._checkedTargets() if p.targetKind == "scene" else [], targetFolder)
            self.support.startJob(arguments, lambda state: self._onJobDone(state, workFolder, outputFolder))

    def _onJobDone(self, state, workFolder, outputFolder) -> None:
        with slicer.util.tryWithErrorDisplay(_("Tumor augmentation failed."), waitCursor=True):
            summary = self.logic.finishJob(state, workFolder, outputFolder)
            if summary is None:
                self.ui.statusLabel.text = _("Cancelled; the scene was not changed. Run again to resume.")
                return
            self.ui.statusLabel.text = self.logic.summary(summary)
        if state.returncode != 0 and state.error != "cancelled":
            self.ui.statusLabel.text = _("Failed: {error}").format(error=state.error)


#
# Logic
#

class TumorAugmentationLogic(ScriptedLoadableModuleLogic):
    """Usable without the GUI, e.g. from the Python console::

        logic = slicer.util.getModuleLogic("TumorAugmentation")
        source = logic.source("phantom", "extradural", phantomSeed=3)
        nodes = logic.preview(source, slicer.util.getNode("case01"), logic.parameters(mode="3d"))
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return TumorAugmentationParameterNode(super().getParameterNode())

    def source(self, kind, tumorType, volumeNode=None, segmentationNode=None, segmentId="", folder=None,
               phantomSeed=0):
        """The tumor source (``TumorAugmentationLib.scene.TumorSource``) the GUI describes."""
        from TumorAugmentationLib import scene

        return scene.TumorSource(kind, tumorType, volumeNode, segmentationNode, segmentId or "",
                                 Path(folder) if folder else None, int(phantomSeed))

    def parameters(self, perSlice=20, mode="2d", rotations=0, fill="default", seed=0):
        """The ``augment`` options (``TumorAugmentationLib.scene.AugmentParameters``)."""
        from TumorAugmentationLib import scene

        return scene.AugmentParameters(int(perSlice), mode, int(rotations), fill, int(seed))

    def guessTumorType(self, segmentationNode, segmentId):
        from TumorAugmentationLib import scene

        return scene.guess_tumor_type(segmentationNode, segmentId)

    def preview(self, source, targetVolume, parameters=None, previewVolume=None, previewSegmentation=None):
        """Insert the tumor once into ``targetVolume`` and show it as new (or refilled) nodes."""
        from TumorAugmentationLib import scene

        return scene.preview(source, targetVolume, parameters, previewVolume, previewSegmentation)

    def saveSource(self, source, folder):
        """Save a scene source (image, tumor mask, sac/cord, type) for later runs; returns the folder."""
        from TumorAugmentationLib import scene

        return scene.write_source_folder(source, Path(folder) / source.name)

    def prepareJob(self, source, outputFolder, parameters, targetNodes=(), targetFolder=None):
        """Write the scene's source and targets to a work folder; return it and the ``augment`` arguments."""
        from TumorAugmentationLib import scene

        if not _isSet(outputFolder):
            raise ValueError(_("Choose an output folder for the dataset."))
        return scene.prepare_job(source, outputFolder, parameters, targetNodes,
                                 targetFolder if _isSet(targetFolder) else None)

    def finishJob(self, state, workFolder, outputFolder):
        """The dataset summary after success, None after Cancel; raises with the job's error."""
        from TumorAugmentationLib import scene

        return scene.finish_run(state, workFolder, outputFolder)

    def summary(self, summary) -> str:
        from TumorAugmentationLib import scene

        return scene.summary_text(summary)


#
# Test
#

class TumorAugmentationTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Developer mode: Reload and Test) on synthetic phantoms."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_PreviewKeepsTargetGeometry()
        self.setUp()
        self.test_RunArgumentsParse()

    def _target(self):
        """(volume node, anatomy segmentation node, phantom case) of a tumor-free phantom."""
        from spinetumor import mrml
        from spinetumor.phantom import generate

        case = generate(5, tumor="none", fov="full")
        volume = mrml.volume_to_node(case.image, "Target")
        segmentation = mrml.labels_to_segmentation(case.anatomy, "Target labels", surfaces=False)
        return volume, segmentation, case

    def test_PreviewKeepsTargetGeometry(self):
        """The preview is a new volume on the target's grid with a tumor in its compartment."""
        import numpy as np
        from spinetumor import mrml
        from spinetumor.augmentation.compartments import check_compartment, compartments_from_anatomy
        from spinetumor.volume import to_canonical

        self.delayDisplay("Previewing a phantom tumor")
        logic = TumorAugmentationLogic()
        target, _, case = self._target()
        nodes = logic.preview(logic.source("phantom", "intradural-extramedullary", phantomSeed=2), target,
                              logic.parameters(perSlice=3, mode="3d", seed=4))
        self.assertIsNot(nodes.volume, target)
        shown, reference = mrml.node_to_volume(nodes.volume), mrml.node_to_volume(target)
        self.assertTrue(shown.same_geometry(reference, tol=1e-9))
        mask = to_canonical(mrml.segmentation_to_labels(nodes.segmentation, target))[0].array > 0
        comp = compartments_from_anatomy(to_canonical(case.anatomy)[0].array)
        spacing = np.asarray(to_canonical(reference)[0].spacing[::-1])
        self.assertTrue(check_compartment(mask, comp, "intradural-extramedullary", spacing))
        self.delayDisplay("Test passed")

    def test_RunArgumentsParse(self):
        """The Run arguments written from the scene parse as a valid ``spinetumor augment`` command."""
        import shutil
        import tempfile

        from spinetumor.cli import build_parser

        self.delayDisplay("Preparing a run")
        logic = TumorAugmentationLogic()
        target, _, _ = self._target()
        out = Path(tempfile.mkdtemp(prefix="TumorAugmentationTest-"))
        work, arguments = logic.prepareJob(logic.source("phantom", "extradural", phantomSeed=3), out,
                                           logic.parameters(perSlice=2), [target])
        try:
            args = build_parser().parse_args(arguments)
            self.assertEqual(args.phantom_source, [3])
            self.assertEqual(args.per_slice, 2)
            self.assertTrue((work / "targets" / "Target" / "vertebrae.nii.gz").exists())
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
        self.delayDisplay("Test passed")
