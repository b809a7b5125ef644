"""Run a ``spinetumor`` command in a background process and follow its progress.

Slicer's modules use this so that long inference never blocks the GUI: the widget starts a
:class:`BackgroundJob`, polls it from a ``qt.QTimer``, and imports the outputs into the
scene only when the job succeeded, so Cancel or an error leave the scene as it was.
Pure Python (``subprocess`` and a reader thread), so it is tested without Slicer.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Optional

from .progress import parse_progress_line


@dataclass
class JobState:
    """What a poll returns: latest progress, message, whether finished, and the error line if any."""

    progress: float = 0.0
    message: str = ""
    finished: bool = False
    returncode: Optional[int] = None
    error: str = ""
    log: list[str] = field(default_factory=list)


class BackgroundJob:
    """A ``python -m spinetumor ... --progress json`` process with non-blocking progress polling."""

    def __init__(self, arguments: list[str], python: Optional[str] = None, env: Optional[dict] = None):
        self.command = [python or sys.executable, "-m", "spinetumor", *map(str, arguments)]
        self._env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self._process: Optional[subprocess.Popen] = None
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._stderr: list[str] = []
        self.state = JobState()
        self.cancelled = False

    def start(self) -> "BackgroundJob":
        """Start the process (in its own process group, so Cancel stops its children too)."""
        self._process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self._env,
            start_new_session=(os.name != "nt"))
        threading.Thread(target=self._pump, args=(self._process.stdout, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self._process.stderr, False), daemon=True).start()
        return self

    def _pump(self, stream, is_stdout: bool) -> None:
        for line in stream:
            line = line.rstrip("\n")
            if is_stdout:
                self._lines.put(line)
            else:
                self._stderr.append(line)

    def poll(self) -> JobState:
        """Consume the output so far and return the current state (never blocks)."""
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            parsed = parse_progress_line(line)
            if parsed:
                self.state.progress, self.state.message = parsed
            else:
                self.state.log.append(line)
        if self._process is not None and not self.state.finished and self._process.poll() is not None:
            self.state.finished = True
            self.state.returncode = self._process.returncode
            if self.state.returncode != 0:
                errors = [line for line in self._stderr if line.strip()]
                self.state.error = "cancelled" if self.cancelled else (errors[-1] if errors else
                                                                       f"exit code {self.state.returncode}")
        return self.state

    def wait(self, timeout: Optional[float] = None) -> JobState:
        """Block until the process ends (for scripts and tests), then return the final state."""
        if self._process is not None:
            self._process.wait(timeout)
            for _ in range(50):   # let the reader threads drain the pipes
                if self._lines.empty():
                    break
                threading.Event().wait(0.01)
        return self.poll()

    def cancel(self) -> None:
        """Stop the process and everything it started."""
        if self._process is None or self._process.poll() is not None:
            return
        self.cancelled = True
        try:
            if os.name == "nt":
                self._process.kill()
            else:
                os.killpg(self._process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
