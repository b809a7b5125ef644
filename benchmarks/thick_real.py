"""Benchmark: the tumor segmentation on real anatomy at clinical slice thickness.

The real scans at hand (Chu) are 1 mm isotropic; clinical sagittal T2 is acquired with 3-5 mm
slices. The real-anatomy datasets of ``benchmarks/real_anatomy.py`` (phantom tumors inserted
into real scans; built here when missing) are scored as they are and averaged into thick
sagittal slices: every new slice is the mean of 3 or 5 consecutive 1 mm slices, its tumor and
vertebra masks are those of the slab's centre slice (``spinetumor.segmentation.train.thick_prepared``), and
the sac and cord are segmented again on the thick image, as ``spinetumor run`` would. The
set's scans without a tumor go through the same change (nothing should be found).

    .venv/bin/python benchmarks/thick_real.py [--sets val test] [--model tumor_rf.skops ...]

Each ``--model`` (default: the shipped forest) is scored at its own threshold and minimum
volume; the result goes into the "Real anatomy at clinical slice thickness" section of
docs/benchmarks.md (``--no-write`` to leave it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from benchmarks._report import machine, write_section  # noqa: E402

SECTION = "Real anatomy at clinical slice thickness"
#: Slab sizes in 1 mm slices: the scans as they are, 3 mm and 5 mm sagittal slices.
SLABS = (1, 3, 5)
SET_NAMES = {"val": "validation", "test": "test"}


def read_set(folder: Path, chu_dir: Path, free_scans) -> tuple[list, list]:
    """One dataset folder's augmented samples and its tumor-free scans, read once for every slab size:
    (samples, tumor-free (name, image, vertebrae))."""
    from spinetumor.augmentation.dataset import read_training_cases
    from spinetumor.labeling.dataset import load_chu_case

    return list(read_training_cases([folder])), [(scan, *load_chu_case(chu_dir, scan)) for scan in free_scans]


def set_cases(samples, free_scans, slab: int):
    """(tumor cases, tumor-free cases) of one set (:func:`read_set`) at one slab size."""
    from spinetumor.segmentation.train import thick_prepared

    tumors = [thick_prepared(c.image, c.tumor, c.vertebrae, c.tumor_type, c.id, slab) for c in samples]
    free = [thick_prepared(image, image.with_array(np.zeros(image.shape, np.uint8)), vertebrae, "none", scan, slab)
            for scan, image, vertebrae in free_scans]
    return [c for c in tumors if c is not None], [c for c in free if c is not None]


def model_name(path: str | None, model, label: str = "") -> str:
    """How a forest is named in the table: shipped or its file, its network's sha256 prefix, and
    ``label`` (``--label``: what else differs in this run, e.g. the engine's commit)."""
    net = f" (network {model.net.sha256[:8]})" if model.uses_net else ""
    return ("shipped" if path is None else str(path)) + net + (f", {label}" if label else "")


def main(argv=None) -> int:
    import torch

    from real_anatomy import VALIDATION_SCANS, build_datasets, overlap_row, score_forest

    from spinetumor.labeling.dataset import CHU_VALIDATION
    from spinetumor.segmentation.tumor import load_tumor_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "runs" / "real_anatomy"), help="real-anatomy datasets (built when missing)")
    p.add_argument("--chu-dir", default=str(REPO.parent / "shared" / "data" / "chu_lumbar_t2"))
    p.add_argument("--sets", nargs="+", default=["val", "test"], choices=sorted(SET_NAMES))
    p.add_argument("--model", action="append", default=[], help="forest .skops to score (default: the shipped one)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=str(REPO / "runs" / "thick_real" / "result.json"))
    p.add_argument("--also", action="append", default=[], metavar="JSON",
                   help="rows of an earlier run of this script (its --json) to report beside this run's, e.g. "
                        "a forest shipped before; repeatable")
    p.add_argument("--label", default="", help="added to every row's name, e.g. 'canal of commit 6036b0e' for a run "
                   "of an earlier checkout reported with --also")
    p.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--report-only", action="store_true", help="rewrite the section from --json (and --also)")
    args = p.parse_args(argv)
    if args.report_only:
        return write_report(json.loads(Path(args.json).read_text()), args)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    out, chu = Path(args.out), Path(args.chu_dir)
    if not all((out / s / "manifest.csv").exists() for s in args.sets):
        build_datasets(out, chu)
    loaded = [(m, load_tumor_model(m)) for m in (args.model or [None])]
    models = {model_name(m, model, args.label): model for m, model in loaded}
    free_scans = {"val": VALIDATION_SCANS, "test": CHU_VALIDATION}
    result = {}
    for set_key in args.sets:
        samples, free_read = read_set(out / set_key, chu, free_scans[set_key])
        for slab in SLABS:
            tumors, free = set_cases(samples, free_read, slab)
            for name, model in models.items():
                scored = {"tumors": score_forest(model, tumors), "free": score_forest(model, free)}
                result[f"{name}|{set_key}|{slab}"] = scored
                row = overlap_row(scored["tumors"])
                print(f"{name} {set_key} {slab} mm: Dice {row['dice']:.3f}, touched "
                      f"{sum(s['tp'] > 0 for s in scored['tumors'])}/{len(tumors)}, tumor-free empty "
                      f"{sum(s['pred'] == 0 for s in scored['free'])}/{len(free)}", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    run = {"result": result, "sets": args.sets, "seconds": time.time() - t0, "machine": machine()}
    Path(args.json).write_text(json.dumps(run, indent=1))
    return write_report(run, args)


def write_report(run: dict, args) -> int:
    """Print the section for ``run`` (this script's JSON) plus the ``--also`` runs; write it unless --no-write."""
    earlier = [json.loads(Path(path).read_text()) for path in args.also]
    rows = {}
    for r in earlier + [run]:
        rows.update(r["result"])
    text = report(rows, run["seconds"], run["machine"], [r["machine"] for r in earlier])
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
    return 0


def validation_summary(result: dict) -> list[str]:
    """Per forest, over the validation rows of all slice thicknesses: tumor-free scans left
    empty and the mean Dice (what the choice of the shipped forest reads first and second)."""
    from real_anatomy import overlap_row

    lines = []
    for name in sorted({k.split("|")[0] for k in result}):
        rows = [v for k, v in result.items() if k.startswith(f"{name}|val|")]
        if not rows:
            continue
        clean = sum(s["pred"] == 0 for r in rows for s in r["free"])
        free = sum(len(r["free"]) for r in rows)
        dice = float(np.mean([overlap_row(r["tumors"])["dice"] for r in rows]))
        lines.append(f"- {name}: validation tumor-free scans empty {clean}/{free}, mean validation Dice "
                     f"{dice:.3f} (over {len(rows)} slice thicknesses)")
    return lines


def report(result: dict, seconds: float, this_machine: str, earlier_machines=()) -> str:
    """The docs section: one row per forest, set and slice thickness (sorted by forest, set, slices)."""
    from real_anatomy import overlap_row

    also = "".join(f" Rows from an earlier run (`--also`): {m}." for m in dict.fromkeys(earlier_machines))
    lines = [f"Machine: {this_machine}. Script: `benchmarks/thick_real.py` ({seconds / 60:.0f} min).{also} The real-anatomy "
             "datasets of \"Real anatomy with inserted tumors\" (validation: chu_13 and chu_14; test: chu_17, chu_18, "
             "chu_19) as they are (1 mm) and averaged into 3 mm and 5 mm sagittal slices (each slice the mean of its "
             "slab, the masks of the slab's centre slice, sac and cord segmented again on the thick image); "
             "tumor-free: the same scans without a tumor, changed the same way. Each forest at its own threshold and "
             "minimum volume, with its own tumor network.",
             "",
             "| forest | set | slices | tumors | Dice | IoU | precision | recall | tumors touched | "
             "tumor-free scans with nothing found | voxels marked in the tumor-free scans |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {name: n for n, name in enumerate(SET_NAMES)}
    for key in sorted(result, key=lambda k: (k.split("|")[0], order[k.split("|")[1]], int(k.split("|")[2]))):
        scored = result[key]
        name, set_key, slab = key.split("|")
        row = overlap_row(scored["tumors"])
        touched = sum(s["tp"] > 0 for s in scored["tumors"])
        clean = sum(s["pred"] == 0 for s in scored["free"])
        lines.append(f"| {name} | {SET_NAMES[set_key]} | {slab} mm | {len(scored['tumors'])} | {row['dice']:.3f} | "
                     f"{row['iou']:.3f} | {row['precision']:.3f} | {row['recall']:.3f} | {touched}/{len(scored['tumors'])} | "
                     f"{clean}/{len(scored['free'])} | {' '.join(str(s['pred']) for s in scored['free'])} |")
    summary = validation_summary(result)
    if summary:
        lines += ["", "Validation rows only, the three thicknesses together (the shipped forest is chosen by these: "
                  "among the forests whose phantom validation left at least 95 % of its tumor-free phantoms empty, "
                  "the one leaving most tumor-free validation scans empty, then the higher mean validation Dice; the "
                  "test rows are not read):", ""] + summary
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
