"""Progress reporting and cancellation shared by the engine, the command line and Slicer.

Engine functions take ``progress(fraction, message)`` and ``cancel() -> bool`` callables and call
:func:`check_cancel` between steps. The command line shows a tqdm bar; with ``--progress json``
it prints one JSON object per line instead, which Slicer's modules read from a background process.
"""

from __future__ import annotations

import json
import sys
from typing import Callable, Optional

ProgressCallback = Callable[[float, str], None]
CancelCallback = Callable[[], bool]

#: Prefix of machine-readable progress lines, so they stand out from other output.
JSON_PREFIX = "SPINETUMOR_PROGRESS "


class Cancelled(RuntimeError):
    """The user cancelled a long computation; nothing was written."""


def check_cancel(cancel: Optional[CancelCallback]) -> None:
    """Raise :class:`Cancelled` when the cancel callable says so."""
    if cancel is not None and cancel():
        raise Cancelled("cancelled by the user")


def report(progress: Optional[ProgressCallback], fraction: float, message: str = "") -> None:
    """Call ``progress`` if given, with the fraction clipped to [0, 1]."""
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))), message)


def sub_progress(progress: Optional[ProgressCallback], start: float, stop: float) -> Optional[ProgressCallback]:
    """A progress callable mapping 0..1 onto ``start..stop`` of ``progress`` (for pipeline stages)."""
    if progress is None:
        return None
    return lambda fraction, message="": progress(start + (stop - start) * fraction, message)


class ConsoleProgress:
    """A context manager giving a progress callable: a tqdm bar, or JSON lines for Slicer."""

    def __init__(self, mode: str = "bar", description: str = ""):
        if mode not in ("bar", "json", "none"):
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode = mode
        self.description = description
        self._bar = None

    def __enter__(self) -> ProgressCallback:
        return self.update

    def update(self, fraction: float, message: str = "") -> None:
        if self.mode == "json":
            print(JSON_PREFIX + json.dumps({"progress": round(fraction, 4), "message": message}), flush=True)
        elif self.mode == "bar":
            if self._bar is None:   # created on first use, so input errors print no empty bar
                from tqdm import tqdm

                self._bar = tqdm(total=100, desc=self.description, unit="%", file=sys.stderr,
                                 bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
            self._bar.n = round(100 * fraction, 1)
            self._bar.set_postfix_str(message, refresh=False)
            self._bar.refresh()

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()


def add_progress_option(parser) -> None:
    """Give a subcommand the ``--progress bar|json|none`` option read by :class:`ConsoleProgress`."""
    parser.add_argument("--progress", choices=("bar", "json", "none"), default="bar",
                        help="progress display: a bar on stderr (default), JSON lines on stdout "
                             "(for Slicer), or none")


def parse_progress_line(line: str) -> Optional[tuple[float, str]]:
    """Read a JSON progress line written by :class:`ConsoleProgress`; None for other lines."""
    if not line.startswith(JSON_PREFIX):
        return None
    try:
        data = json.loads(line[len(JSON_PREFIX):])
        return float(data["progress"]), str(data.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return None
