"""``make demo``: run the whole SpineTumor analysis on bundled data and write reports a person can read.

Writes, under the output folder:

* ``phantom/``: a synthetic case (``case/``: image, vertebrae, anatomy, tumor, truth.json) and
  the analysis of its image (``report.html`` and the rest of ``spinetumor run``'s outputs);
* ``sample/``: the bundled real thoracolumbar T2 (Spinal Cord Toolbox tutorial data, MIT) with a
  phantom tumor inserted along its CSF by TumorAugmentation (``input_with_tumor.nii.gz`` and the
  inserted tumor's exact mask ``inserted_tumor.nii.gz``), and the analysis of that image. The
  scan itself has no tumor; the report says so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .io import read_volume, write_volume
from .phantom import write_case
from .pipeline import run_study
from .progress import ConsoleProgress

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "Resources" / "SampleData" / "sct_t2_lumbar" / "t2_lumbar.nii.gz"


def demo_phantom(out: Path, seed: int, progress=None) -> Path:
    """Analyze a phantom with an intradural-extramedullary tumor; returns its report.html."""
    write_case(out / "case", seed=seed, tumor="intradural-extramedullary")
    truth = json.loads((out / "case" / "truth.json").read_text())
    described = "; ".join(f"{t['type']} at {', '.join(t['levels'])}, {t['volume_ml']:.2f} mL" for t in truth["tumors"])
    run_study(out / "case" / "image.nii.gz", out, progress=progress,
              notes=[f"Synthetic phantom (seed {seed}); its ground truth: {described or 'no tumor'} "
                     "(case/truth.json)."])
    return out / "report.html"


def insert_phantom_tumor(volume, seed: int, tumor_type: str, name: str = "target"):
    """``volume`` with the ``tumor_type`` tumor of phantom ``seed`` glided into its CSF by
    TumorAugmentation (3D, at the first position it fits), placed by the vertebra labeling;
    returns the :class:`~spinetumor.augmentation.glide.Insertion`."""
    from .augmentation.dataset import source_from_phantom
    from .augmentation.glide import insert_once
    from .labeling.infer import label_vertebrae

    return insert_once(source_from_phantom(seed, tumor_type), volume, label_vertebrae(volume).labels,
                       mode="3d", seed=seed, name=name)


def demo_sample(out: Path, seed: int, tumor_type: str = "extradural", progress=None) -> Path:
    """Insert a phantom tumor into the bundled real scan, then analyze it; returns its report.html."""
    insertion = insert_phantom_tumor(read_volume(SAMPLE), seed, tumor_type, SAMPLE.name)
    where = (f"at {insertion.level} ({insertion.position_mm:.0f} mm along the CSF from the top of the "
             "labeled levels)") if insertion.level else (
        f"{insertion.position_mm:.0f} mm along the CSF from its top (the vertebra labeling named no level "
        "in this scan, so the tumor's level is not known)")
    image = write_volume(insertion.image, out / "input_with_tumor.nii.gz")
    write_volume(insertion.mask, out / "inserted_tumor.nii.gz")
    run_study(image, out, progress=progress, notes=[
        f"Real scan ({SAMPLE.name}, Spinal Cord Toolbox tutorial data, MIT) without any tumor of its own: the "
        f"{tumor_type} tumor was taken from phantom seed {seed} and inserted by TumorAugmentation {where}; "
        "its exact mask is inserted_tumor.nii.gz."])
    return out / "report.html"


def run_demo(out: Path, seed: int = 7, progress_mode: str = "bar") -> list[Path]:
    """Write both demo cases; returns the two report pages."""
    reports = []
    with ConsoleProgress(progress_mode, "phantom") as progress:
        reports.append(demo_phantom(out / "phantom", seed, progress))
    with ConsoleProgress(progress_mode, "real sample") as progress:
        reports.append(demo_sample(out / "sample", seed, progress=progress))
    return reports


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
