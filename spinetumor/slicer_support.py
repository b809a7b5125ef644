"""What every SpineTumor Slicer widget needs besides the MRML bridge: dependencies and background runs.

* :func:`missing_packages` / :func:`ensure_dependencies`: install what the engine needs on first
  use (never at import), after asking; torch comes from Slicer's PyTorch extension, which picks
  the build matching the GPU driver, and packages Slicer bundles (numpy, SimpleITK) are never
  replaced.
* :class:`JobRunner`: runs a ``spinetumor`` command in a background process
  (:class:`spinetumor.jobs.BackgroundJob`) and follows it from a ``qt.QTimer``, updating a
  progress bar and turning the Apply button into Cancel, so Slicer stays responsive;
  :func:`finish_job` ends a run (results on success, nothing after Cancel, an error otherwise).
* :class:`ModuleWidgetSupport`: the parameter-node and job plumbing every module widget shares.

``slicer`` and ``qt`` are imported inside functions only.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from .jobs import BackgroundJob

#: import name -> pip requirement, for what the engine imports lazily (torch handled apart).
PIP_REQUIREMENTS = {
    "scipy": "scipy>=1.10,<2",
    "safetensors": "safetensors>=0.4,<1",
    "sklearn": "scikit-learn>=1.3,<1.10",
    "skfuzzy": "scikit-fuzzy>=0.5,<0.6",
    "packaging": "packaging>=23",
    "networkx": "networkx>=3,<4",
    "skops": "skops>=0.9,<0.17",
    "tqdm": "tqdm>=4.60,<5",
}


def missing_packages(import_names=None) -> list[str]:
    """Import names among ``import_names`` (default: torch and every pip requirement) not installed."""
    names = list(import_names) if import_names is not None else ["torch", *PIP_REQUIREMENTS]
    return [name for name in names if importlib.util.find_spec(name) is None]


def ensure_dependencies(import_names=None, ask: bool = True) -> bool:
    """Install missing engine dependencies inside Slicer; False when the user declined.

    Torch is installed through the PyTorch extension (``PyTorchUtils``); the rest with
    ``slicer.util.pip_install`` without dependencies that would replace Slicer's own packages.
    """
    import slicer

    missing = missing_packages(import_names)
    if not missing:
        return True
    if ask and not slicer.util.confirmOkCancelDisplay(
            "SpineTumor needs these Python packages, which are not installed yet:\n\n  "
            + ", ".join(missing) + "\n\nInstall them now? This can take a few minutes.",
            "Install dependencies"):
        return False
    if "torch" in missing:
        try:
            import PyTorchUtils
        except ImportError:
            raise RuntimeError("SpineTumor needs the PyTorch extension: install it from the Extension Manager "
                               "and restart Slicer") from None
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False) is None:
            raise RuntimeError("PyTorch could not be installed; see the PyTorch extension's messages")
    requirements = [PIP_REQUIREMENTS[name] for name in missing if name in PIP_REQUIREMENTS]
    if requirements:
        slicer.util.pip_install(requirements)
    still = missing_packages(import_names)
    if still:
        raise RuntimeError("these packages are still missing after installation: " + ", ".join(still))
    return True


def load_terminology() -> str:
    """Register SpineTumor's terminology (segment names and codes) with Slicer; returns its context name.

    Segments written by the engine name this context in their ``TerminologyEntry`` tag, so
    every module calls this once at startup. Loading twice is harmless.
    """
    import slicer

    from .labels import RESOURCE_FOLDER

    logic = slicer.modules.terminologies.logic()
    return logic.LoadTerminologyFromFile(str(RESOURCE_FOLDER / "SpineTumor.term.json"))


def register_terminology() -> None:
    """:func:`load_terminology` at Slicer startup: a failure is logged, never raised.

    A missing terminology only changes how segment names are shown, so it must not stop
    a module from loading.
    """
    import logging

    try:
        load_terminology()
    except Exception as error:
        logging.warning(f"SpineTumor terminology not loaded: {error}")


def engine_python() -> str:
    """The Python that runs background jobs: Slicer's PythonSlicer when present, else this one."""
    return shutil.which("PythonSlicer") or sys.executable


def engine_environment() -> dict:
    """Environment for background jobs: the folder holding the ``spinetumor`` package on PYTHONPATH."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": root + (os.pathsep + path if path else "")}


def new_work_folder(prefix: str) -> Path:
    """A fresh temporary folder for one background run's inputs and outputs."""
    return Path(tempfile.mkdtemp(prefix=f"SpineTumor-{prefix}-"))


class JobRunner:
    """Drive one :class:`BackgroundJob` from the Qt event loop.

    ``on_progress(fraction, message)`` is called on every poll, ``on_done(state)`` once at the end
    (``state.returncode == 0`` on success, ``state.error`` otherwise, ``"cancelled"`` after
    :meth:`cancel`). The widget imports results in ``on_done`` only on success, so the scene is
    untouched by a failed or cancelled run.
    """

    def __init__(self, arguments: list[str], on_progress: Callable[[float, str], None],
                 on_done: Callable, interval_ms: int = 200):
        import qt

        self.job = BackgroundJob([*map(str, arguments), "--progress", "json"], python=engine_python(),
                                 env=engine_environment())
        self._on_progress = on_progress
        self._on_done = on_done
        self._timer = qt.QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.connect("timeout()", self._poll)

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    def start(self) -> "JobRunner":
        self.job.start()
        self._timer.start()
        return self

    def cancel(self) -> None:
        self.job.cancel()

    def _poll(self) -> None:
        state = self.job.poll()
        self._on_progress(state.progress, state.message)
        if state.finished:
            self._timer.stop()
            self._on_done(state)


def set_busy(button, progress_bar, busy: bool, idle_text: str, status_label=None, message: str = "") -> None:
    """Switch the Apply button between its idle text and Cancel, and show or hide the progress bar."""
    button.text = "Cancel" if busy else idle_text
    progress_bar.visible = busy
    if not busy:
        progress_bar.value = 0
    if status_label is not None:
        status_label.text = message


def show_progress(progress_bar, status_label, fraction: float, message: str) -> None:
    """Show a job's progress (0..1) and its current step."""
    progress_bar.value = int(round(100 * fraction))
    if status_label is not None and message:
        status_label.text = message



def finish_job(state, work_folder, on_success: Callable, what: str, keep_folder: bool = False):
    """End a background run: ``on_success()`` when it succeeded, None after Cancel, else raise.

    ``state`` is the finished job's :class:`spinetumor.jobs.JobState`. A failure raises
    RuntimeError ``"<what> failed: <the job's last error line>"``, so the widget shows one
    readable line. The work folder goes away in every case unless ``keep_folder``; nothing
    is touched in the scene unless the run succeeded.
    """
    try:
        if state.returncode == 0:
            return on_success()
        if state.error == "cancelled":
            return None
        raise RuntimeError(f"{what} failed: {state.error or f'exit code {state.returncode}'}")
    finally:
        if not keep_folder:
            shutil.rmtree(work_folder, ignore_errors=True)


class ModuleWidgetSupport:
    """Parameter-node binding and background-job plumbing every SpineTumor module widget shares.

    The widget (a ``ScriptedLoadableModuleWidget`` with ``VTKObservationMixin``) makes one in
    ``setup`` and forwards ``enter``/``exit``/``cleanup`` to it. It loads the widget's .ui
    (``uiFile``, relative to the module's resources) into ``widget.ui``, which must have
    ``applyButton``, ``progressBar`` and ``statusLabel``, and needs ``widget.logic`` (whose
    ``getParameterNode()`` returns the wrapped parameter node). ``defaultVolume`` names a volume
    parameter that gets the scene's first scalar volume while empty. Hooks (optional callables):
    ``updateButtons()`` enables what
    makes sense, ``enableInputs(bool)`` locks the inputs while a job runs. While a job runs
    the Apply button reads Cancel; the scene is only changed by the ``onDone`` callback of
    :meth:`startJob`, so Cancel or an error leave it as it was. (A helper object rather than
    a base class, so module files import nothing from ``spinetumor`` at file scope.)
    """

    def __init__(self, widget, uiFile: str, applyButtonText: str = "Apply", defaultVolume: str | None = None,
                 updateButtons: Callable | None = None, enableInputs: Callable | None = None):
        import slicer

        uiWidget = slicer.util.loadUI(widget.resourcePath(uiFile))
        widget.layout.addWidget(uiWidget)
        widget.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.widget = widget
        self.ui = widget.ui
        self.applyButtonText = applyButtonText
        self._defaultVolume = defaultVolume
        self._updateButtons = updateButtons or (lambda: None)
        self._enableInputs = enableInputs or (lambda enabled: None)
        self.parameterNode = None
        self._guiTag = None
        self._runner = None
        self._busyButton = None      # the button that reads Cancel while a job runs (startJob)
        self._busyText = None
        self.ui.progressBar.visible = False
        widget.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self._onSceneStartClose)
        widget.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self._onSceneEndClose)

    # --- parameter node ---

    def initializeParameterNode(self) -> None:
        """Bind the module's parameter node to the GUI and fill its defaults (``enter``)."""
        import slicer

        self.setParameterNode(self.widget.logic.getParameterNode())
        if self._defaultVolume and not getattr(self.parameterNode, self._defaultVolume):
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                setattr(self.parameterNode, self._defaultVolume, firstVolumeNode)

    def setParameterNode(self, parameterNode) -> None:
        """Unbind the previous parameter node, bind ``parameterNode`` (or none) to the GUI."""
        import vtk

        self.releaseParameterNode()
        self.parameterNode = parameterNode
        if parameterNode:
            self._guiTag = parameterNode.connectGui(self.ui)
            self.widget.addObserver(parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterModified)
            self._updateButtons()

    def releaseParameterNode(self) -> None:
        """Unbind the parameter node from the GUI (``exit``)."""
        import vtk

        if self.parameterNode:
            self.parameterNode.disconnectGui(self._guiTag)
            self._guiTag = None
            self.widget.removeObserver(self.parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterModified)

    def cleanup(self) -> None:
        """Stop a running job and drop every observer (``cleanup``)."""
        self.cancelJob()
        self.widget.removeObservers()

    def _onParameterModified(self, caller=None, event=None) -> None:
        self._updateButtons()

    def _onSceneStartClose(self, caller, event) -> None:
        self.cancelJob()
        self.setParameterNode(None)

    def _onSceneEndClose(self, caller, event) -> None:
        if self.widget.parent.isEntered:
            self.initializeParameterNode()

    # --- background job ---

    @property
    def jobRunning(self) -> bool:
        return self._runner is not None and self._runner.running

    def startJob(self, arguments: list[str], onDone: Callable, button=None, idleText: str | None = None) -> None:
        """Run ``spinetumor <arguments>`` in the background; ``onDone(state)`` when it ends.

        ``button`` (default the Apply button) reads Cancel while the job runs and gets
        ``idleText`` (default its current text) back afterwards, for widgets with several
        actions (e.g. Segment and Analyze).
        """
        def finished(state):
            self._runner = None
            self.setBusy(False)
            onDone(state)

        self._busyButton = button if button is not None else self.ui.applyButton
        self._busyText = idleText if idleText is not None else (
            self.applyButtonText if button is None else button.text)
        self._runner = JobRunner(arguments, self.showProgress, finished).start()
        self.setBusy(True, "Starting...")

    def cancelJob(self) -> None:
        """Ask the running job (if any) to stop; ``onDone`` then gets ``state.error == "cancelled"``."""
        if self.jobRunning:
            self.ui.statusLabel.text = "Cancelling..."
            self._runner.cancel()

    def setBusy(self, busy: bool, message: str = "") -> None:
        """Apply <-> Cancel, progress bar shown while busy, inputs locked while busy."""
        button = self._busyButton or self.ui.applyButton
        set_busy(button, self.ui.progressBar, busy, self._busyText or self.applyButtonText, self.ui.statusLabel,
                 message)
        self._enableInputs(not busy)
        self._updateButtons()

    def showProgress(self, fraction: float, message: str) -> None:
        show_progress(self.ui.progressBar, self.ui.statusLabel, fraction, message)
