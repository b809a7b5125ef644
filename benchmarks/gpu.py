"""GPU against CPU: the same analysis on both devices, compared output by output and timed per stage.

Runs :func:`spinetumor.pipeline.analyze` with the shipped models on fresh phantoms (seeds 910000+,
never used in training), ``--per-type`` of each tumor type and one tumor-free, once with
``device="cpu"`` and once with ``device="cuda"``. For each case it reports how far the two runs
agree (vertebra labels: fraction of voxels with the same label; tumor mask: Dice between the two
devices; tumor type and levels: equal or not; tumor probability: largest absolute difference) and
the time per stage on each device. One warm-up analysis per device comes first, so loading the
models, CUDA's start-up and kernel selection are not in the table (the warm-up's seconds are given
beside it). Needs a CUDA GPU.
Writes the "## GPU inference" section of docs/benchmarks.md unless ``--no-write``.

    python benchmarks/gpu.py [--per-type 2] [--json results.json] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

from spinetumor import labels  # noqa: E402
from spinetumor.metrics import overlap  # noqa: E402
from spinetumor.phantom import generate  # noqa: E402
from spinetumor.pipeline import analyze  # noqa: E402

SEED_BASE = 910000


def timed_analysis(case, device: str):
    """The analysis of ``case.image`` on ``device`` and its wall seconds."""
    start = time.perf_counter()
    analysis = analyze(case.image, "phantom", device=device)
    return analysis, time.perf_counter() - start


def tumor_summary(analysis) -> list[tuple]:
    """Each found tumor's type and levels, in id order (what the report says about it)."""
    return [(t["type"], tuple(t["levels"])) for t in analysis.report["tumors"]]


def compare(case, cpu, gpu) -> dict:
    """How far the CPU and GPU analyses of one case agree, and how each scores against the truth."""
    cpu_tumor, gpu_tumor = cpu.tumor_instances.array > 0, gpu.tumor_instances.array > 0
    truth = case.tumor.array > 0
    both_empty = not cpu_tumor.any() and not gpu_tumor.any()
    return {
        "vertebra_agreement": float(np.mean(cpu.vertebrae.array == gpu.vertebrae.array)),
        "tumor_dice_cpu_gpu": 1.0 if both_empty else overlap(cpu_tumor, gpu_tumor)["dice"],
        "probability_max_diff": float(np.abs(cpu.tumor_probability.array.astype(float)
                                             - gpu.tumor_probability.array.astype(float)).max()),
        "same_findings": tumor_summary(cpu) == tumor_summary(gpu),
        "dice_truth_cpu": overlap(cpu_tumor, truth)["dice"] if truth.any() else None,
        "dice_truth_gpu": overlap(gpu_tumor, truth)["dice"] if truth.any() else None,
    }


def warm_up() -> dict:
    """One analysis per device to load the models and start CUDA; its seconds on each."""
    case = generate(SEED_BASE - 1, tumor="none")
    return {device: timed_analysis(case, device)[1] for device in ("cpu", "cuda")}


def run_case(seed: int, tumor: str) -> dict:
    """Analyse one phantom on the CPU and on the GPU; the comparison and the timings."""
    case = generate(seed, tumor=tumor)
    cpu, cpu_seconds = timed_analysis(case, "cpu")
    gpu, gpu_seconds = timed_analysis(case, "cuda")
    row = {"seed": seed, "tumor": tumor, "shape": "x".join(map(str, case.image.shape[::-1])),
           "cpu_s": cpu_seconds, "gpu_s": gpu_seconds,
           "cpu_stages": cpu.report["timings_s"], "gpu_stages": gpu.report["timings_s"]}
    row.update(compare(case, cpu, gpu))
    return row


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def section(rows: list[dict], per_type: int, warm: dict) -> str:
    """The Markdown section: one row per case, the mean stage times, and how to read them."""
    import torch

    stages = list(rows[0]["cpu_stages"])
    lines = [
        f"Machine: {machine()}; torch {torch.__version__}. Script: `benchmarks/gpu.py --per-type {per_type}`, "
        f"the shipped models, fresh phantoms (seeds {SEED_BASE}+), {per_type} per tumor type and one tumor-free; "
        "each analysed with `device=\"cpu\"` and with `device=\"cuda\"`, after one warm-up analysis per device "
        f"(seed {SEED_BASE - 1}, tumor-free: {warm['cpu']:.1f} s on the CPU, {warm['cuda']:.1f} s on the GPU, "
        "model loading and CUDA start-up included).",
        "",
        "| seed | tumor | size (i x j x k) | vertebra labels equal | tumor Dice CPU vs GPU | max probability difference "
        "| same findings (type, levels) | Dice vs truth CPU / GPU | seconds CPU / GPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['seed']} | {r['tumor']} | {r['shape']} | {r['vertebra_agreement']:.5f} | "
              f"{r['tumor_dice_cpu_gpu']:.3f} | {r['probability_max_diff']:.3f} | "
              f"{'yes' if r['same_findings'] else 'no'} | {_fmt(r['dice_truth_cpu'])} / {_fmt(r['dice_truth_gpu'])} | "
              f"{r['cpu_s']:.1f} / {r['gpu_s']:.1f} |" for r in rows]
    mean = {dev: {s: float(np.mean([r[f"{dev}_stages"][s] for r in rows])) for s in stages} for dev in ("cpu", "gpu")}
    lines += ["", "Mean time per stage (s), CPU / GPU: "
              + ", ".join(f"{s} {mean['cpu'][s]:.2f} / {mean['gpu'][s]:.2f}" for s in stages) + ".", "",
              "Reading it: the networks run on the chosen device; fuzzy c-means, the features, the random forest "
              "and the post-processing run on the CPU either way, so the GPU shortens the labeling and the tumor "
              "network's share of the segmentation. Floating-point sums differ between devices, so voxels near a "
              "decision boundary can flip; the columns show how many do. On a machine with many CPU cores the CPU "
              "figures here are not those of the 2-core CPU in \"End-to-end pipeline\"."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-type", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--no-write", action="store_true", help="print only; docs/benchmarks.md is not rewritten")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA GPU; none is available", file=sys.stderr)
        return 2
    kinds = [k for k in labels.TUMOR_TYPE_NAMES for _ in range(args.per_type)] + ["none"]
    warm = warm_up()
    rows = []
    for offset, tumor in enumerate(kinds):
        rows.append(run_case(SEED_BASE + offset, tumor))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"warm_up_s": warm, "rows": rows}, indent=1))
    text = section(rows, args.per_type, warm)
    print(text)
    if not args.no_write:
        write_section("GPU inference", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
