"""End-to-end benchmark of ``spinetumor run``'s analysis: time per stage, tumor found, type and levels right.

Runs :func:`spinetumor.pipeline.analyze` with the shipped models on fresh phantoms (seeds never
used in training: 900000+), two of each tumor type, and, when ../shared/data is present, times it
on a real 381 x 381 x 77 Chu scan. Writes the "## End-to-end pipeline" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/pipeline.py [--per-type 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

from spinetumor import labels  # noqa: E402
from spinetumor.io import read_volume  # noqa: E402
from spinetumor.phantom import generate  # noqa: E402
from spinetumor.pipeline import analyze  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHU = REPO.parent / "shared" / "data" / "chu_lumbar_t2" / "chu_02_t2.nii.gz"


def best_match(found: list[dict], truth_tumor: dict, found_map: np.ndarray, truth_map: np.ndarray, tid: int):
    """The found tumor overlapping the true one most, or None."""
    best, overlap = None, 0
    for tumor in found:
        n = int(((found_map == tumor["id"]) & (truth_map == tid)).sum())
        if n > overlap:
            best, overlap = tumor, n
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-type", type=int, default=2)
    args = parser.parse_args(argv)
    rows, stage_times = [], []
    seed = 900000
    for tumor_type in labels.TUMOR_TYPE_NAMES:
        for _ in range(args.per_type):
            case = generate(seed, tumor=tumor_type)
            start = time.perf_counter()
            analysis = analyze(case.image, f"phantom {seed}")
            total = time.perf_counter() - start
            stage_times.append(analysis.report["timings_s"])
            truth = case.truth["tumors"][0]
            match = best_match(analysis.report["tumors"], truth, analysis.tumor_instances.array, case.tumor.array, 1)
            rows.append({
                "seed": seed, "type": tumor_type, "shape": "x".join(map(str, case.image.shape[::-1])),
                "found": match is not None, "type_right": bool(match and match["type"] == tumor_type),
                "levels_right": bool(match and match["levels"] == truth["levels"]),
                "truth_levels": " ".join(truth["levels"]), "found_levels": " ".join(match["levels"]) if match else "",
                "false_tumors": len(analysis.report["tumors"]) - (match is not None), "seconds": total,
            })
            print(rows[-1], flush=True)
            seed += 1
    real = ""
    if CHU.exists():
        volume = read_volume(CHU)
        start = time.perf_counter()
        analysis = analyze(volume, CHU.name)
        real = (f"\nOn a real 381 x 381 x 77 scan (Chu case 02, 1 mm): {time.perf_counter() - start:.1f} s for the analysis "
                "(`spinetumor.pipeline` from the read volume to the report; writing the outputs not included); "
                + ", ".join(f"{k} {v:.1f} s" for k, v in analysis.report["timings_s"].items()) + ".\n")
    stages = list(stage_times[0])
    mean = {s: np.mean([t[s] for t in stage_times]) for s in stages}
    n = len(rows)
    lines = [
        f"Machine: {machine()}. Script: `benchmarks/pipeline.py --per-type {args.per_type}`, the shipped models, "
        f"fresh phantoms (seeds 900000+), {args.per_type} per tumor type.",
        "",
        f"- Tumor found (a detected component overlaps the true tumor): {sum(r['found'] for r in rows)}/{n}",
        f"- Type right (CNN), among all tumors: {sum(r['type_right'] for r in rows)}/{n}",
        f"- Levels exactly right, among all tumors: {sum(r['levels_right'] for r in rows)}/{n}",
        f"- Extra detections that overlap no true tumor: {sum(r['false_tumors'] for r in rows)} in {n} cases",
        "",
        "| seed | type | size (i x j x k) | found | type right | true levels | found levels | extra | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['seed']} | {r['type']} | {r['shape']} | {'yes' if r['found'] else 'no'} | "
              f"{'yes' if r['type_right'] else 'no'} | {r['truth_levels']} | {r['found_levels']} | "
              f"{r['false_tumors']} | {r['seconds']:.1f} |" for r in rows]
    lines += ["", "Mean time per stage on the phantoms (s): "
              + ", ".join(f"{s} {mean[s]:.2f}" for s in stages) + ".", real,
              "Reading the table: the whole chain is only as good as its weakest stage, the tumor segmentation "
              "(see Tumor segmentation), which misses some tumors; type and level figures here count a missed "
              f"tumor as wrong. Vertebra labeling quality is in its own section. {len(rows)} phantoms are a small "
              "sample: the per-stage figures are in their own sections (levels from true tumor masks in "
              "\"Localization\"). Times are wall clock with nothing else running unless stated."]
    write_section("End-to-end pipeline", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
