"""False findings of the whole pipeline on tumor-free real scans, as they are and at clinical slice thickness.

    .venv/bin/python benchmarks/tumor_free_real.py [--chu-dir ../shared/data/chu_lumbar_t2] [--no-write]

Every Chu scan (none holds a tumor) goes through ``spinetumor.pipeline.analyze`` as a user's
``spinetumor run`` would take it (labeling model, canal and cord, forest with its tumor network,
CNN, localization), as it is (1 mm sagittal slices) and averaged into 3 mm and 5 mm slices
(``thick_acquisition``). Every finding is a false one; the table lists each with its type,
levels, volume and the cautions the report gives it (``tumors[].cautions``: disc, one-slice).

The scans are grouped by what the tumor models saw, since a scan a model was trained on says
little about the scans it was not: the tumor network and the forest were trained on the
tumor-free scans the network's manifest lists (and on tumors inserted into them); chu_13 and
chu_14 chose the shipped forest (``benchmarks/real_anatomy.py``, ``VALIDATION_SCANS``); the
labeling model's validation scans chu_17..19 served no tumor model and are the held-out group.
Results go to docs/benchmarks.md, "Tumor-free real scans: false findings", unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import caution_kinds, machine, write_section  # noqa: E402
from benchmarks.real_anatomy import VALIDATION_SCANS  # noqa: E402

TITLE = "Tumor-free real scans: false findings"
SLABS = (1, 3, 5)
GROUPS = ("tumor models trained on it", "chose the shipped forest", "held out")


def scan_groups(scans: list[str]) -> dict:
    """Each scan's group (:data:`GROUPS`), from the tumor network's manifest and the benchmarks' splits."""
    from spinetumor.labeling.dataset import CHU_VALIDATION
    from spinetumor.labeling.model import load_manifest
    from spinetumor.segmentation.tumor_net import DEFAULT_NET

    negatives = load_manifest(DEFAULT_NET).get("training", {}).get("negatives", [])
    trained = {Path(p).name.replace("_t2.nii.gz", "") for p in negatives}
    groups = {}
    for scan in scans:
        groups[scan] = (GROUPS[0] if scan in trained else GROUPS[1] if scan in VALIDATION_SCANS
                        else GROUPS[2] if scan in CHU_VALIDATION else "other")
    return groups


def findings(report: dict) -> list[str]:
    """One short description per finding of a report: type, levels, volume, cautions."""
    from spinetumor.report import level_span

    return [f"{t['type']} at {level_span(t['levels'])}, {t['volume_ml']:.2f} ml"
            + "".join(f", {kind} caution" for kind in caution_kinds(t)) for t in report["tumors"]]


def totals(tumors: list[dict]) -> str:
    """One sentence on all the false findings: how many, their volume range, how many carry each caution."""
    if not tumors:
        return "No false finding in any scan."
    volumes = [t["volume_ml"] for t in tumors]
    count = {kind: sum(kind in caution_kinds(t) for t in tumors) for kind in ("disc", "one-slice")}
    return (f"False findings: {len(tumors)} in all, {min(volumes):.2f}-{max(volumes):.2f} ml; "
            f"{count['disc']} of them with the disc caution and {count['one-slice']} with the one-slice caution "
            f"(`tumors[].cautions`).")


def main(argv=None) -> int:
    from spinetumor.augmentation.thick_slices import thick_acquisition
    from spinetumor.io import read_volume
    from spinetumor.pipeline import analyze, load_models

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chu-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "chu_lumbar_t2")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    start = time.time()
    scans = sorted(p.name.replace("_t2.nii.gz", "") for p in args.chu_dir.glob("chu_*_t2.nii.gz"))
    groups = scan_groups(scans)
    models = load_models("cpu")
    rows, clean, false_tumors = [], {}, []
    for scan in scans:
        image = read_volume(args.chu_dir / f"{scan}_t2.nii.gz")
        for slab in SLABS:
            volume = thick_acquisition(image, slab)[0] if slab > 1 else image
            report = analyze(volume, f"{scan} {slab} mm", device="cpu", **models).report
            found = findings(report)
            false_tumors += report["tumors"]
            key = (groups[scan], slab)
            clean[key] = clean.get(key, (0, 0))
            clean[key] = (clean[key][0] + (not found), clean[key][1] + 1)
            rows.append(f"| {scan} | {groups[scan]} | {slab} mm | {len(found)} | {'; '.join(found)} |")
            print(rows[-1], flush=True)
    summary = [f"- {group}, {slab} mm: {clean[(group, slab)][0]}/{clean[(group, slab)][1]} scans with no finding"
               for group in GROUPS + ("other",) for slab in SLABS if (group, slab) in clean]
    body = "\n".join([
        f"Machine: {machine()}. Script: `benchmarks/tumor_free_real.py` ({(time.time() - start) / 60:.0f} min).", "",
        "The 12 Chu scans (no tumor in any) through the whole pipeline as `spinetumor run` takes a scan, as they "
        "are (1 mm sagittal slices) and averaged into 3 mm and 5 mm slices; every finding is a false one. Groups: "
        "what the tumor models saw (the tumor network and the forest were trained on the first group, with and "
        "without inserted tumors; chu_13 and chu_14 chose the shipped forest; chu_17..19 served no tumor model, and the labeling model chose its best epoch on them). "
        "Only the held-out group says how the pipeline does on scans it has not met.", "",
        *summary, "", totals(false_tumors), "",
        "| scan | group | slices | findings | each finding: type, levels, volume, cautions |",
        "|---|---|---|---|---|", *rows, ""])
    print(body)
    if not args.no_write:
        write_section(TITLE, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
