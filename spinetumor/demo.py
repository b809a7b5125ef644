"""``make demo``: run SpineTumor's main job on bundled data and write pictures a person can look at.

Writes, under the output folder:

* ``phantom/``: one synthetic case (image, vertebrae, anatomy, tumor, truth.json) and
  ``overview.png``, the mid-tumor sagittal slice with the ground truth overlaid;
* ``sample/``: the geometry summary and an overview of the bundled real lumbar scan
  (Spinal Cord Toolbox tutorial data, MIT).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .figures import sagittal_overview
from .info import describe
from .io import read_volume, write_text
from .phantom import generate, write_case

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "Resources" / "SampleData" / "sct_t2_lumbar" / "t2_lumbar.nii.gz"


def run_demo(out: Path, seed: int = 7) -> list[Path]:
    """Write the demo outputs; returns the paths written."""
    written = []
    phantom_dir = out / "phantom"
    written += write_case(phantom_dir, seed=seed, tumor="intradural-extramedullary")
    case = generate(seed, tumor="intradural-extramedullary")
    truth = json.loads((phantom_dir / "truth.json").read_text())
    tumors = ", ".join(f"{t['type']} at {'-'.join(t['levels'])} ({t['volume_ml']:.2f} mL)" for t in truth["tumors"])
    written.append(sagittal_overview(case.image, case.anatomy, phantom_dir / "overview.png",
                                     title=f"phantom seed {seed}: {tumors or 'no tumor'}"))
    if SAMPLE.exists():
        sample_dir = out / "sample"
        volume = read_volume(SAMPLE)
        written.append(write_text(describe(volume, SAMPLE.name) + "\n", sample_dir / "info.txt"))
        written.append(sagittal_overview(volume, None, sample_dir / "overview.png",
                                         title="bundled real lumbar T2 (SCT, MIT)"))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_output", help="output folder")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    for path in run_demo(Path(args.out), args.seed):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
