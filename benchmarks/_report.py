"""Helpers shared by the benchmark scripts: the machine line and replacing one section of docs/benchmarks.md."""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEvery number on this page comes from a script in `benchmarks/`; rerun it to update its section.\n"


def machine() -> str:
    """One line describing this machine (CPU model, cores, GPU if torch sees one) and today's date."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{cpu or 'unknown CPU'}, {os.cpu_count()} cores, {gpu}; {platform.system()} {platform.release()}; {datetime.date.today().isoformat()}"


def write_section(title: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the ``## title`` section of ``path`` with ``body`` (append it when absent).

    Other sections are left untouched; the file gets the short header when it is new.
    """
    text = path.read_text() if path.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def outline_phrase(net_boundary) -> str:
    """Whose outline a forest's tumors get (post-processing step 5 of ``spinetumor.segmentation.tumor``)."""
    if net_boundary is None:
        return "tumors keep the forest's own outline"
    return (f"each tumor the forest keeps is drawn along the network's outline, probability >= {net_boundary:g} "
            "connected to it (its own outline where the network marks none of it)")


def caution_kinds(tumor: dict) -> list[str]:
    """Short names of a report tumor's cautions ("disc", "one-slice"), in the report's order.

    Why: the benchmarks count each kind apart, and the report holds the cautions as sentences
    (``spinetumor.localization.cautions``).
    """
    from spinetumor.localization import DISC_CAUTION, ONE_SLICE_CAUTION

    disc_start = DISC_CAUTION.split("{disc}")[0]
    return ["disc" if text.startswith(disc_start) else "one-slice" if text == ONE_SLICE_CAUTION else "other"
            for text in tumor["cautions"]]
