"""Vertebra Labeling: name the vertebral bodies T11-L5 in a sagittal T2 lumbar MRI with one click.

The module file is thin: scene work lives in ``VertebraLabelingLib`` (Qt-free, tested under
pytest), the algorithm in the ``spinetumor`` engine. Inference runs in a background process
(``spinetumor label``) so Slicer stays responsive; its outputs are imported only when it
succeeds, so Cancel or an error leave the scene as it was.
"""

import logging
from typing import Annotated

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
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

#: Devices offered in the GUI ("auto": CUDA, then Apple MPS, then CPU).
DEVICES = ("auto", "cpu")
#: Import names the labeling engine needs beyond what Slicer bundles (installed on first Apply).
ENGINE_PACKAGES = ("torch", "safetensors", "tqdm")


#
# VertebraLabeling
#

class VertebraLabeling(ScriptedLoadableModule):
    """Module metadata (see the Slicer scripted module template)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Vertebra Labeling")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation.SpineTumor")]
        self.parent.dependencies = ["Segmentations", "Markups"]
        self.parent.contributors = ["SpineTumor developers"]
        self.parent.helpText = _(
            "Labels the vertebral bodies T11, T12 and L1-L5 in a sagittal T2 lumbar spine MRI with two "
            "attention U-Nets (a body is where either finds one; one of them names the level): one segment per level, the level names at the body centroids and a table "
            "of volumes, centroids and confidences. Landmarks (a centroid and two corners per body, "
            "points named 'L3' and 'L3-corner') can be turned into masks for training or correction. "
            "See the <a href=\"https://github.com/SpineTumor/SlicerSpineTumor#readme\">README</a>.")
        self.parent.acknowledgementText = _(
            "The labeling method follows Pal et al., automatic vertebra labeling and tumor localization "
            "in lumbar spine T2 MRI with an attention U-Net. The networks are trained on the lumbar T2 data of "
            "Chu et al. 2015, PLoS One, 'Fully automatic localization and segmentation of 3D vertebral "
            "bodies from CT/MR images via a learning-based method' (Zenodo record 22304).")
        slicer.app.connect("startupCompleted()", registerTerminology)


def registerTerminology() -> None:
    """Make Slicer know SpineTumor's segment names and codes (the engine's terminology file)."""
    from spinetumor.slicer_support import register_terminology

    register_terminology()


#
# Parameter node
#

@parameterNodeWrapper
class VertebraLabelingParameterNode:
    """The module's state, saved with the scene.

    inputVolume - sagittal T2 lumbar MRI.
    outputSegmentation - where the labels go; a new one is made (and then reused) when empty.
    device - "auto" or "cpu".
    landmarks - point list of centroid and corner landmarks for "Create masks".
    """

    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    landmarks: vtkMRMLMarkupsFiducialNode


#
# Widget
#

class VertebraLabelingWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The GUI: binds the .ui to the parameter node, runs the background job, shows the results.

    Parameter-node binding and the Apply <-> Cancel job handling live in
    ``spinetumor.slicer_support.ModuleWidgetSupport`` (``self.support``).
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.support = None
        self._observedLandmarks = None

    def setup(self) -> None:
        from spinetumor.slicer_support import ModuleWidgetSupport

        ScriptedLoadableModuleWidget.setup(self)
        self.logic = VertebraLabelingLogic()
        self.support = ModuleWidgetSupport(self, "UI/VertebraLabeling.ui", _("Apply"), defaultVolume="inputVolume",
                                           updateButtons=self._updateButtons, enableInputs=self._enableInputs)

        self.ui.landmarkPlaceWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceMultipleMarkups

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.createMasksButton.connect("clicked(bool)", self.onCreateMasksButton)
        self.ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onOutputChanged)
        self.ui.landmarksSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onLandmarksChanged)

        self.support.initializeParameterNode()

    def cleanup(self) -> None:
        if self.support is not None:
            self.support.cleanup()

    def enter(self) -> None:
        self.support.initializeParameterNode()

    def exit(self) -> None:
        self.support.releaseParameterNode()

    @property
    def _parameterNode(self):
        return self.support.parameterNode if self.support is not None else None

    def _updateButtons(self) -> None:
        busy = self.support.jobRunning
        hasInput = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = busy or hasInput
        self.ui.applyButton.toolTip = _("Stop the labeling") if busy else (
            _("Label the vertebral bodies T11-L5") if hasInput else _("Select an input volume"))
        self.ui.createMasksButton.enabled = not busy and hasInput and bool(self._parameterNode.landmarks)

    def _enableInputs(self, enabled: bool) -> None:
        self.ui.inputVolumeSelector.enabled = enabled
        self.ui.outputSegmentationSelector.enabled = enabled

    # --- labeling in a background process ---

    def onApplyButton(self) -> None:
        """Apply starts the labeling; while it runs the same button cancels it."""
        if self.support.jobRunning:
            self.support.cancelJob()
            return
        with slicer.util.tryWithErrorDisplay(_("Vertebra labeling could not start."), waitCursor=True):
            from spinetumor.slicer_support import ensure_dependencies

            if not ensure_dependencies(ENGINE_PACKAGES):
                return
            inputVolume = self._parameterNode.inputVolume
            outputSegmentation = self._parameterNode.outputSegmentation
            workFolder, arguments = self.logic.prepareJob(inputVolume, self._parameterNode.device)
            self.support.startJob(
                arguments, lambda state: self._onJobDone(state, workFolder, inputVolume, outputSegmentation))

    def _onJobDone(self, state, workFolder, inputVolume, outputSegmentation) -> None:
        with slicer.util.tryWithErrorDisplay(_("Vertebra labeling failed."), waitCursor=True):
            nodes = self.logic.finishJob(state, workFolder, inputVolume, outputSegmentation)
            if nodes is None:
                self.ui.statusLabel.text = _("Cancelled; the scene was not changed.")
                return
            self._showResults(nodes)
        if state.returncode != 0 and state.error != "cancelled":
            self.ui.statusLabel.text = _("Failed: {error}").format(error=state.error)

    def _showResults(self, nodes) -> None:
        if self._parameterNode:
            self._parameterNode.outputSegmentation = nodes.segmentation
        self.ui.segmentationShow3DButton.setSegmentationNode(nodes.segmentation)
        self.ui.resultsTableView.setMRMLTableNode(nodes.table)
        self.ui.statusLabel.text = self.logic.summary(nodes.table)

    def onOutputChanged(self, node) -> None:
        self.ui.segmentationShow3DButton.setSegmentationNode(node)
        table = self.logic.resultsTable(node)
        self.ui.resultsTableView.setMRMLTableNode(table)

    # --- masks from landmarks ---

    def onLandmarksChanged(self, node) -> None:
        """Follow the chosen point list: the place widget edits it and new points get level names."""
        self.ui.landmarkPlaceWidget.setCurrentNode(node)
        if self._observedLandmarks is not None:
            self.removeObserver(self._observedLandmarks, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                                self.onLandmarkPlaced)
        self._observedLandmarks = node
        if node is not None:
            self.addObserver(node, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.onLandmarkPlaced)

    def onLandmarkPlaced(self, caller, event) -> None:
        if self.ui.autoNameCheckBox.checked:
            self.logic.nameLastLandmark(caller)

    def onCreateMasksButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Masks could not be made from the landmarks."), waitCursor=True):
            segmentation = self.logic.createMasks(self._parameterNode.landmarks, self._parameterNode.inputVolume)
            self.ui.statusLabel.text = _("Masks made in {name}.").format(name=segmentation.GetName())


#
# Logic
#

class VertebraLabelingLogic(ScriptedLoadableModuleLogic):
    """Usable without the GUI, e.g. from the Python console for batch work::

        logic = slicer.util.getModuleLogic("VertebraLabeling")
        for volume in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            segmentation = logic.process(volume, device="cpu")
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return VertebraLabelingParameterNode(super().getParameterNode())

    def process(self, inputVolume, outputSegmentation=None, device: str = "auto", progress=None, cancel=None):
        """Label T11-L5 of ``inputVolume`` in this process (blocks) and return the segmentation node.

        ``outputSegmentation`` is reused when given, with its level points and table.
        ``progress(fraction, message)`` and ``cancel() -> bool`` are optional callables; on
        cancel ``spinetumor.progress.Cancelled`` is raised and the scene is left unchanged.
        """
        from spinetumor.slicer_support import missing_packages
        from VertebraLabelingLib import scene

        missing = missing_packages(ENGINE_PACKAGES)
        if missing:
            raise RuntimeError("missing Python packages: " + ", ".join(missing) + "; install them with "
                               "spinetumor.slicer_support.ensure_dependencies() or press Apply once")
        nodes = scene.label_volume_node(inputVolume, outputSegmentation, device=device, progress=progress,
                                        cancel=cancel)
        logging.info(self.summary(nodes.table))
        return nodes.segmentation

    def prepareJob(self, inputVolume, device: str = "auto"):
        """Write the input to a fresh work folder; return it and the ``spinetumor label`` arguments."""
        from spinetumor.slicer_support import new_work_folder
        from VertebraLabelingLib import scene

        if inputVolume is None:
            raise ValueError(_("Select an input volume first."))
        folder = new_work_folder("labeling")
        inputPath = scene.write_input(inputVolume, folder)
        return folder, scene.label_arguments(inputPath, folder, device)

    def finishJob(self, state, workFolder, inputVolume, outputSegmentation=None):
        """Import the job's outputs when it succeeded (LabelingNodes), None after Cancel; raise on error."""
        from VertebraLabelingLib import scene

        return scene.import_job_result(state, workFolder, segmentation_node=outputSegmentation,
                                       input_volume_node=inputVolume)

    def resultsTable(self, segmentationNode):
        """The results table of a labeling segmentation, or None."""
        from VertebraLabelingLib import scene

        return segmentationNode.GetNodeReference(scene.TABLE_ROLE) if segmentationNode is not None else None

    def summary(self, tableNode) -> str:
        """One line: the levels found and those missing, and the cautions on their labels and names if any."""
        from VertebraLabelingLib import scene

        if tableNode is None:
            return ""
        table = tableNode.GetTable()
        level, present = table.GetColumnByName("Level"), table.GetColumnByName("Present")
        found = [level.GetValue(r) for r in range(table.GetNumberOfRows()) if present.GetValue(r) == "yes"]
        missing = [level.GetValue(r) for r in range(table.GetNumberOfRows()) if present.GetValue(r) != "yes"]
        text = _("Found {count} levels: {levels}.").format(count=len(found), levels=", ".join(found) or "-")
        if missing:
            text += " " + _("Missing: {levels}.").format(levels=", ".join(missing))
        caution = tableNode.GetAttribute(scene.CAUTION_ATTRIBUTE)
        return text + " " + caution if caution else text

    def nameLastLandmark(self, markupsNode) -> None:
        """Give the most recently placed point the next landmark name (T11, T11-corner, ...)."""
        from VertebraLabelingLib import landmarks

        count = markupsNode.GetNumberOfControlPoints()
        if count == 0:
            return
        others = [markupsNode.GetNthControlPointLabel(i) for i in range(count - 1)]
        markupsNode.SetNthControlPointLabel(count - 1, landmarks.next_landmark_label(others))

    def createMasks(self, landmarksNode, inputVolume, outputSegmentation=None):
        """Vertebral-body masks from centroid + corner landmarks; returns the segmentation node."""
        from VertebraLabelingLib import landmarks

        return landmarks.masks_from_markups(landmarksNode, inputVolume, segmentation_node=outputSegmentation)


#
# Test
#

class VertebraLabelingTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Developer mode: Reload and Test). Heavy inference is skipped without the model."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ResultShownAndRoundTrips()
        self.setUp()
        self.test_MasksFromLandmarks()
        self.setUp()
        self.test_LabelPhantom()

    def _phantom(self):
        """(image node, truth Volume) of a tumor-free phantom; skips when the engine lacks phantoms."""
        from spinetumor import mrml

        try:
            from spinetumor.phantom import generate
        except ImportError:
            self.skipTest("spinetumor.phantom is not available")
        case = generate(3, tumor="none", fov="full")   # T11..L5 all in view
        return mrml.volume_to_node(case.image, "Phantom T2"), case.vertebrae

    def _dice(self, a, b) -> float:
        total = int(a.sum()) + int(b.sum())
        return 2.0 * int((a & b).sum()) / total if total else 1.0

    def test_ResultShownAndRoundTrips(self):
        """The truth shown as a result comes back voxel for voxel; level names sit at the centroids."""
        import numpy as np
        from spinetumor import mrml
        from spinetumor.labels import VERTEBRAE
        from VertebraLabelingLib import scene

        self.delayDisplay("Showing a labeling result")
        inputNode, truth = self._phantom()
        levels = []
        for lab in VERTEBRAE:
            mask = truth.array == lab.value
            centroid = truth.index_to_ras(np.argwhere(mask).mean(axis=0)).tolist() if mask.any() else None
            levels.append({"name": lab.key, "value": lab.value, "present": bool(mask.any()),
                           "volume_ml": float(mask.sum() * np.prod(truth.spacing) / 1000.0),
                           "centroid_ras": centroid, "confidence": 1.0})
        nodes = scene.show_labeling(truth, levels, input_volume_node=inputNode)
        back = mrml.segmentation_to_labels(nodes.segmentation, inputNode)
        self.assertTrue(np.array_equal(back.array, truth.array))
        self.assertEqual(nodes.table.GetNumberOfRows(), 7)
        present = [lv for lv in levels if lv["present"]]
        self.assertEqual(nodes.levels.GetNumberOfControlPoints(), len(present))
        for index, level in enumerate(present):
            position = [0.0, 0.0, 0.0]
            nodes.levels.GetNthControlPointPosition(index, position)
            self.assertTrue(np.allclose(position, level["centroid_ras"], atol=1e-3))
        self.delayDisplay("Test passed")

    def test_MasksFromLandmarks(self):
        """Landmarks taken from the phantom's truth give masks with Dice > 0.8 per level."""
        from spinetumor import mrml
        from spinetumor.labeling.landmarks import landmarks_from_labels
        from VertebraLabelingLib import landmarks

        self.delayDisplay("Masks from landmarks")
        inputNode, truth = self._phantom()
        points = landmarks.landmarks_to_markups(landmarks_from_labels(truth))
        segmentation = VertebraLabelingLogic().createMasks(points, inputNode)
        result = mrml.segmentation_to_labels(segmentation, inputNode)
        for value in sorted(set(truth.array.ravel().tolist()) - {0}):
            self.assertGreater(self._dice(result.array == value, truth.array == value), 0.8)
        self.delayDisplay("Test passed")

    def test_LabelPhantom(self):
        """Full inference on a phantom (skipped without the shipped model): input geometry, good overlap."""
        import numpy as np
        from spinetumor import mrml
        from spinetumor.labeling.model import DEFAULT_WEIGHTS

        if not DEFAULT_WEIGHTS.exists():
            self.skipTest(f"model weights not found: {DEFAULT_WEIGHTS}")
        self.delayDisplay("Labeling a phantom (this takes a while on a CPU)")
        inputNode, truth = self._phantom()
        segmentation = VertebraLabelingLogic().process(inputNode, device="cpu")
        result = mrml.segmentation_to_labels(segmentation, inputNode)
        self.assertTrue(result.same_geometry(truth))
        values = sorted(set(truth.array.ravel().tolist()) - {0})
        dices = [self._dice(result.array == v, truth.array == v) for v in values]
        self.assertGreater(float(np.mean(dices)), 0.7)
        table = VertebraLabelingLogic().resultsTable(segmentation)
        self.assertEqual(table.GetNumberOfRows(), 7)
        self.delayDisplay("Test passed")
