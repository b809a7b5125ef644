"""Spine Tumor Segmentation: segment, classify and localize tumors in a sagittal T2 lumbar MRI.

Segment finds tumor, thecal sac and cord (``spinetumor segment``); Analyze runs the whole
pipeline (``spinetumor run``: vertebra labeling, canal and cord, tumors, their types and levels,
the report). The module file is thin: scene work lives in ``SpineTumorSegmentationLib``
(Qt-free, tested under pytest), the algorithms in the ``spinetumor`` engine. Both run in a
background process so Slicer stays responsive; outputs are imported only when the run
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
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from SpineTumorSegmentationLib import DENOISERS, DEVICES


#
# SpineTumorSegmentation
#

class SpineTumorSegmentation(ScriptedLoadableModule):
    """Module metadata (see the Slicer scripted module template)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Spine Tumor Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation.SpineTumor")]
        self.parent.dependencies = ["Segmentations", "Markups"]
        self.parent.contributors = ["SpineTumor developers"]
        self.parent.helpText = _(
            "Finds tumors in a sagittal T2 lumbar spine MRI. <b>Segment</b> outlines tumor, thecal sac and "
            "cord (shearlet denoising, fuzzy c-means and a random forest that also takes a small U-Net's "
            "tumor probability), optionally guided by a vertebra "
            "segmentation. <b>Analyze</b> runs the whole pipeline: vertebra labeling T11-L5, canal and cord, "
            "tumors classified as intramedullary, intradural-extramedullary or extradural, the levels they "
            "span and a report (HTML, JSON, CSV) that <b>Save report</b> copies to a folder. "
            "See the <a href=\"https://github.com/SpineTumor/SlicerSpineTumor#readme\">README</a>.")
        self.parent.acknowledgementText = _(
            "The method follows Pal et al., automatic vertebra labeling and tumor localization in lumbar "
            "spine T2 MRI (attention U-Net labeling; shearlet denoising, fuzzy c-means and random forest "
            "tumor segmentation). The labeling network is trained on the lumbar T2 data of Chu et al. 2015, "
            "PLoS One (Zenodo record 22304).")
        slicer.app.connect("startupCompleted()", registerTerminology)


def registerTerminology() -> None:
    """Make Slicer know SpineTumor's segment names and codes (shared with the other modules)."""
    from spinetumor.slicer_support import register_terminology

    register_terminology()


#
# Parameter node
#

@parameterNodeWrapper
class SpineTumorSegmentationParameterNode:
    """The module's state, saved with the scene.

    inputVolume - sagittal T2 lumbar MRI.
    vertebraeSegmentation - optional vertebra segmentation (T11..L5 segments) guiding Segment.
    outputSegmentation - where the results go; a new one is made (and then reused) when empty.
    device - "auto" or "cpu" for Analyze.
    clusters, denoiser, threshold - Segment's advanced options; 0, "model" and 0 mean the model's own.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    vertebraeSegmentation: vtkMRMLSegmentationNode
    outputSegmentation: vtkMRMLSegmentationNode
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    clusters: Annotated[int, WithinRange(0, 10)] = 0
    denoiser: Annotated[str, Choice(list(DENOISERS))] = "model"
    threshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.0


#
# Widget
#

class SpineTumorSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The GUI: binds the .ui to the parameter node, runs Segment or Analyze in the background
    (the pressed button reads Cancel meanwhile), shows the results and saves the report.

    Parameter-node binding and job handling live in ``spinetumor.slicer_support.ModuleWidgetSupport``
    (``self.support``); the Analyze button is its Apply button.
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.support = None
        self._jobKind = None

    def setup(self) -> None:
        from spinetumor.slicer_support import ModuleWidgetSupport

        ScriptedLoadableModuleWidget.setup(self)
        self.logic = SpineTumorSegmentationLogic()
        self.support = ModuleWidgetSupport(self, "UI/SpineTumorSegmentation.ui", _("Analyze"),
                                           defaultVolume="inputVolume", updateButtons=self._updateButtons,
                                           enableInputs=self._enableInputs)

        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.applyButton.connect("clicked(bool)", self.onAnalyzeButton)
        self.ui.saveReportButton.connect("clicked(bool)", self.onSaveReportButton)
        self.ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onOutputChanged)

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
        p = self._parameterNode
        hasInput = bool(p and p.inputVolume)
        noInput = _("Select an input volume")
        self.ui.segmentButton.enabled = (busy and self._jobKind == "segment") or (not busy and hasInput)
        self.ui.segmentButton.toolTip = _("Stop the segmentation") if busy else (
            _("Segment tumor, thecal sac and cord") if hasInput else noInput)
        self.ui.applyButton.enabled = (busy and self._jobKind == "analyze") or (not busy and hasInput)
        self.ui.applyButton.toolTip = _("Stop the analysis") if busy else (
            _("Run the whole analysis: vertebrae, canal and cord, tumors, types, levels, report")
            if hasInput else noInput)
        self.ui.saveReportButton.enabled = not busy and self.logic.hasReport(p.outputSegmentation if p else None)

    def _enableInputs(self, enabled: bool) -> None:
        for widget in (self.ui.inputVolumeSelector, self.ui.vertebraeSelector, self.ui.outputSegmentationSelector,
                       self.ui.advancedCollapsibleButton):
            widget.enabled = enabled

    # --- runs in a background process ---

    def onSegmentButton(self) -> None:
        """Segment starts the tumor segmentation; while it runs the same button cancels it."""
        if self.support.jobRunning:
            self.support.cancelJob()
            return
        with slicer.util.tryWithErrorDisplay(_("Tumor segmentation could not start."), waitCursor=True):
            p = self._parameterNode
            self._start("segment", self.ui.segmentButton, _("Segment"), lambda: self.logic.prepareSegmentJob(
                p.inputVolume, p.vertebraeSegmentation, p.outputSegmentation, p.clusters, p.denoiser, p.threshold))

    def onAnalyzeButton(self) -> None:
        """Analyze starts the whole pipeline; while it runs the same button cancels it."""
        if self.support.jobRunning:
            self.support.cancelJob()
            return
        with slicer.util.tryWithErrorDisplay(_("The analysis could not start."), waitCursor=True):
            p = self._parameterNode
            self._start("analyze", self.ui.applyButton, _("Analyze"),
                        lambda: self.logic.prepareAnalyzeJob(p.inputVolume, p.device))

    def _start(self, kind: str, button, idleText: str, prepare) -> None:
        """Install missing dependencies, write the job's inputs (``prepare()``), start the job."""
        from spinetumor.slicer_support import ensure_dependencies

        if not ensure_dependencies():
            return
        workFolder, arguments = prepare()
        inputVolume, outputSegmentation = self._parameterNode.inputVolume, self._parameterNode.outputSegmentation
        self._jobKind = kind
        self.support.startJob(arguments, lambda state: self._onJobDone(kind, state, workFolder, inputVolume,
                                                                       outputSegmentation),
                              button=button, idleText=idleText)

    def _onJobDone(self, kind, state, workFolder, inputVolume, outputSegmentation) -> None:
        self._jobKind = None
        with slicer.util.tryWithErrorDisplay(_("The run failed."), waitCursor=True):
            nodes = self.logic.finishJob(kind, state, workFolder, inputVolume, outputSegmentation)
            if nodes is None:
                self.ui.statusLabel.text = _("Cancelled; the scene was not changed.")
                return
            self._showResults(nodes)
        if state.returncode != 0 and state.error != "cancelled":
            self.ui.statusLabel.text = _("Failed: {error}").format(error=state.error)
        self._updateButtons()

    def _showResults(self, nodes) -> None:
        if self._parameterNode:
            self._parameterNode.outputSegmentation = nodes.segmentation
        self.onOutputChanged(nodes.segmentation)
        self.ui.statusLabel.text = self.logic.summary(nodes)

    def onOutputChanged(self, node) -> None:
        self.ui.segmentationShow3DButton.setSegmentationNode(node)
        self.ui.resultsTableView.setMRMLTableNode(self.logic.resultsTable(node))
        if self.support is not None:
            self._updateButtons()

    # --- report ---

    def onSaveReportButton(self) -> None:
        import qt

        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Folder to save the report in"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("The report could not be saved."), waitCursor=True):
            written = self.logic.saveReport(self._parameterNode.outputSegmentation, folder)
            self.ui.statusLabel.text = _("Saved {count} files in {folder}.").format(count=len(written), folder=folder)


#
# Logic
#

class SpineTumorSegmentationLogic(ScriptedLoadableModuleLogic):
    """Usable without the GUI, e.g. from the Python console for batch work::

        logic = slicer.util.getModuleLogic("SpineTumorSegmentation")
        for volume in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            segmentation, report = logic.analyze(volume, device="cpu")
            logic.saveReport(segmentation, f"/reports/{volume.GetName()}")
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return SpineTumorSegmentationParameterNode(super().getParameterNode())

    @staticmethod
    def _checkPackages() -> None:
        from spinetumor.slicer_support import missing_packages

        missing = missing_packages()
        if missing:
            raise RuntimeError("missing Python packages: " + ", ".join(missing) + "; install them with "
                               "spinetumor.slicer_support.ensure_dependencies() or press Segment once")

    def segment(self, inputVolume, outputSegmentation=None, vertebraeSegmentation=None, clusters: int = 0,
                denoiser: str = "model", threshold: float = 0.0, progress=None, cancel=None):
        """Segment tumor, canal and cord of ``inputVolume`` in this process (blocks); returns the segmentation.

        ``clusters`` 0, ``denoiser`` "model" and ``threshold`` 0 keep the tumor model's own settings.
        ``progress(fraction, message)`` and ``cancel() -> bool`` are optional; on cancel
        ``spinetumor.progress.Cancelled`` is raised and the scene is left unchanged.
        """
        from SpineTumorSegmentationLib import scene

        self._checkPackages()
        nodes = scene.segment_volume_node(inputVolume, outputSegmentation, vertebraeSegmentation, clusters, denoiser,
                                          threshold, progress=progress, cancel=cancel)
        return nodes.segmentation

    def analyze(self, inputVolume, outputSegmentation=None, device: str = "auto", progress=None, cancel=None):
        """Run the whole analysis of ``inputVolume`` in this process (blocks).

        Returns ``(segmentation node, report dict)``; the report schema is in docs/report.md.
        """
        from SpineTumorSegmentationLib import scene

        self._checkPackages()
        nodes = scene.analyze_volume_node(inputVolume, outputSegmentation, device=device, progress=progress,
                                          cancel=cancel)
        logging.info(self.summary(nodes))
        return nodes.segmentation, nodes.report

    def prepareSegmentJob(self, inputVolume, vertebraeSegmentation=None, outputSegmentation=None, clusters: int = 0,
                          denoiser: str = "model", threshold: float = 0.0):
        """Write the inputs to a fresh work folder; return it and the ``spinetumor segment`` arguments."""
        from SpineTumorSegmentationLib import scene

        return scene.prepare_segment_job(inputVolume, vertebraeSegmentation, outputSegmentation, clusters, denoiser,
                                         threshold)

    def prepareAnalyzeJob(self, inputVolume, device: str = "auto"):
        """Write the input to a fresh work folder; return it and the ``spinetumor run`` arguments."""
        from SpineTumorSegmentationLib import scene

        return scene.prepare_analyze_job(inputVolume, device)

    def finishJob(self, kind: str, state, workFolder, inputVolume, outputSegmentation=None):
        """Import a finished job's outputs when it succeeded (ResultNodes), None after Cancel; raise on error."""
        from SpineTumorSegmentationLib import scene

        return scene.import_job_result(state, workFolder, kind, segmentation_node=outputSegmentation,
                                       input_volume_node=inputVolume)

    def resultsTable(self, segmentationNode):
        """The tumor results table of an output segmentation, or None."""
        from SpineTumorSegmentationLib import scene

        return segmentationNode.GetNodeReference(scene.TABLE_ROLE) if segmentationNode is not None else None

    def hasReport(self, segmentationNode) -> bool:
        """Whether the segmentation holds an analysis report to save."""
        from SpineTumorSegmentationLib import scene

        return scene.stored_report(segmentationNode) is not None

    def saveReport(self, segmentationNode, folder):
        """Copy the analysis report (HTML, JSON, CSV, pictures) into ``folder``; returns the files."""
        from SpineTumorSegmentationLib import scene

        return scene.save_report(segmentationNode, folder)

    def summary(self, nodes) -> str:
        """One line about a result: the tumors of an analysis, the segments of a segmentation."""
        from SpineTumorSegmentationLib import scene

        if nodes.report is not None:
            return scene.summary_text(nodes.report)
        segmentation = nodes.segmentation.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        return _("Segments: {names}.").format(names=", ".join(names) or "-")


#
# Test
#

class SpineTumorSegmentationTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Developer mode: Reload and Test). Inference is skipped without the model files."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ShowAnalysisAndSaveReport()
        self.setUp()
        self.test_SegmentPhantom()
        self.setUp()
        self.test_AnalyzePhantom()

    def _case(self, tumor="intradural-extramedullary"):
        """(input node, phantom case) of a phantom with one tumor, T11..L5 in view."""
        from spinetumor import mrml
        from spinetumor.phantom import generate

        case = generate(2, tumor=tumor, fov="full")
        return mrml.volume_to_node(case.image, "Phantom T2"), case

    def _skipWithoutModels(self, *keys):
        from spinetumor.classification.model import DEFAULT_WEIGHTS as TYPE_WEIGHTS
        from spinetumor.labeling.model import DEFAULT_WEIGHTS as LABELING_WEIGHTS
        from spinetumor.segmentation.tumor import DEFAULT_MODEL as TUMOR_MODEL

        paths = {"labeling": LABELING_WEIGHTS, "tumor": TUMOR_MODEL, "type": TYPE_WEIGHTS}
        missing = [str(paths[k]) for k in keys if not paths[k].exists()]
        if missing:
            self.skipTest("model files not found: " + ", ".join(missing))

    def test_ShowAnalysisAndSaveReport(self):
        """A pipeline output folder made from the phantom's truth: segments, labels, table, report."""
        import shutil
        import tempfile
        from pathlib import Path

        from spinetumor.pipeline import write_analysis
        from SpineTumorSegmentationLib import scene
        from SpineTumorSegmentationLib.truth import analysis_from_truth

        self.delayDisplay("Showing an analysis")
        inputNode, case = self._case()
        analysis = analysis_from_truth(case)
        folder = Path(tempfile.mkdtemp(prefix="SpineTumorSegmentationTest-"))
        try:
            write_analysis(analysis, folder)
            nodes = scene.import_analysis_output(folder, input_volume_node=inputNode)
            segmentation = nodes.segmentation.GetSegmentation()
            self.assertIsNotNone(segmentation.GetSegment("intradural-extramedullary"))
            self.assertEqual(nodes.table.GetNumberOfRows(), 1)
            self.assertEqual(nodes.tumors.GetNthControlPointLabel(0), "1: Intradural-extramedullary tumor")
            saved = SpineTumorSegmentationLogic().saveReport(nodes.segmentation, folder / "saved")
            self.assertIn("report.html", [path.name for path in saved])
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.delayDisplay("Test passed")

    def test_SegmentPhantom(self):
        """Tumor segmentation of a phantom (skipped without the tumor model): the tumor is found."""
        import numpy as np
        from spinetumor import mrml

        self._skipWithoutModels("tumor")
        self.delayDisplay("Segmenting a phantom (this takes a while on a CPU)")
        inputNode, case = self._case()
        segmentationNode = SpineTumorSegmentationLogic().segment(inputNode)
        mask = mrml.segment_to_mask(segmentationNode, "tumor", inputNode).array > 0
        truth = np.asarray(case.tumor.array) > 0
        self.assertGreater(2.0 * (mask & truth).sum() / (mask.sum() + truth.sum()), 0.5)
        self.delayDisplay("Test passed")

    def test_AnalyzePhantom(self):
        """The whole analysis of a phantom (skipped without the models): one tumor of the right type."""
        self._skipWithoutModels("labeling", "tumor", "type")
        self.delayDisplay("Analyzing a phantom (this takes a while on a CPU)")
        inputNode, case = self._case()
        segmentationNode, report = SpineTumorSegmentationLogic().analyze(inputNode, device="cpu")
        self.assertGreaterEqual(len(report["tumors"]), 1)
        self.assertEqual(report["tumors"][0]["type"], case.truth["tumors"][0]["type"])
        self.assertEqual(SpineTumorSegmentationLogic().resultsTable(segmentationNode).GetNumberOfRows(),
                         len(report["tumors"]))
        self.delayDisplay("Test passed")
