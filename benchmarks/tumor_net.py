"""Tumor networks alone on the validation phantoms: the figures a network is chosen by.

    .venv/bin/python benchmarks/tumor_net.py [--nets LABEL=WEIGHTS ...] [--val-cases 32] [--no-write]

Each network (default: the shipped one) predicts the validation phantoms of the segmentation
training (``spinetumor.segmentation.train.VAL_SEED_BASE``, the cases ``spinetumor train
tumor-net --val-cases`` validates on; never the benchmark's test seeds) on its own grid, as
its training validates: the canal box at 1 mm in-plane, probability >= 0.5, no forest and no
post-processing. Reported per network: mean 3D Dice over the tumor phantoms, per tumor type,
the voxel Dice on the tumors' inner sagittal slices and on their first and last slices
(``slice_role_counts`` and ``slice_role_dice`` of ``benchmarks/segmentation.py``), and the
tumor-free phantoms left empty. These are validation figures, for choosing between networks;
held-out figures are in "Tumor segmentation: shipped model". Results go to docs/benchmarks.md,
"Tumor network: validation phantoms", unless ``--no-write``; ``--json`` keeps the per-case numbers.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import machine, write_section  # noqa: E402
from benchmarks.segmentation import slice_role_counts, slice_role_dice  # noqa: E402

TITLE = "Tumor network: validation phantoms"


def missed_slices(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """(sagittal slices holding tumor where ``pred`` marks none of its pixels, slices holding tumor).

    Why: such a slice is lost whatever the threshold or the outline step does with it (the
    network's probability there is near 0), so it bounds what post-processing can recover.
    """
    holding = np.flatnonzero(truth.any(axis=(1, 2)))
    return int(sum(not (pred[s] & truth[s]).any() for s in holding)), int(len(holding))


def score_network(net, cases: list) -> dict:
    """Per-case Dice (tumor phantoms) or marked voxels (tumor-free), summed slice-role counts and
    the tumor slices missed wholly (:func:`missed_slices`)."""
    from spinetumor.segmentation.net_train import case_probability

    per_case, roles, missed = [], {}, np.zeros(2, int)
    for seed, kind, case in cases:
        pred = case_probability(net, case, "cpu") >= 0.5
        truth = case["tumor"] > 0
        row = {"seed": seed, "kind": kind, "marked": int(pred.sum())}
        if truth.any():
            row["dice"] = float(2 * (pred & truth).sum() / (pred.sum() + truth.sum()))
            for key, value in slice_role_counts(pred, truth).items():
                roles[key] = roles.get(key, 0) + value
            missed += missed_slices(pred, truth)
        per_case.append(row)
    return {"per_case": per_case, "slice_roles": roles, "missed_slices": missed.tolist()}


def table_row(label: str, sha: str, result: dict, kinds: list) -> str:
    """One markdown row: Dice overall and per type, inner and end slices, tumor-free empty."""
    tumors = [r for r in result["per_case"] if "dice" in r]
    free = [r for r in result["per_case"] if "dice" not in r]
    per_kind = [np.mean([r["dice"] for r in tumors if r["kind"] == k]) for k in kinds]
    cells = [label, sha[:12], f"{np.mean([r['dice'] for r in tumors]):.3f}"] + [f"{d:.3f}" for d in per_kind]
    cells += [f"{slice_role_dice(result['slice_roles'], role):.3f}" for role in ("inner", "end")]
    cells.append("{}/{}".format(*result["missed_slices"]))
    cells.append(f"{sum(r['marked'] == 0 for r in free)}/{len(free)}")
    return "| " + " | ".join(cells) + " |"


def main(argv=None) -> int:
    from spinetumor.segmentation.net_train import validation_cases
    from spinetumor.segmentation.train import KINDS
    from spinetumor.segmentation.tumor_net import DEFAULT_NET, load_tumor_net

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", nargs="+", default=[f"shipped={DEFAULT_NET}"], metavar="LABEL=WEIGHTS",
                    help="networks to score (safetensors with their manifest beside them)")
    ap.add_argument("--val-cases", type=int, default=32, help="validation phantoms (a quarter tumor-free)")
    ap.add_argument("--json", type=Path, default=None, help="write the per-case results here")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    start = time.time()
    cases = validation_cases(args.val_cases)          # as `train tumor-net --val-cases` validates
    kinds = [k for k in KINDS if k != "none"]
    rows, results = [], {}
    for item in args.nets:
        label, _, path = item.partition("=")
        net = load_tumor_net(path or label, "cpu")
        results[label] = {"sha256": net.sha256, "command": net.manifest.get("command", ""),
                          **score_network(net.net, cases)}
        rows.append(table_row(label, net.sha256, results[label], kinds))
        print(rows[-1], flush=True)
    minutes = (time.time() - start) / 60
    n_tumor = sum(c[2]["tumor"].any() for c in cases)
    header = ("| network | sha256 | Dice | " + " | ".join(kinds) + " | inner slices | end slices "
              "| tumor slices missed wholly | tumor-free empty |\n|" + "---|" * (7 + len(kinds)) + "\n")
    body = (f"Machine: {machine()}. Script: `benchmarks/tumor_net.py --val-cases {args.val_cases} --nets "
            + shlex.join(args.nets) + f"` ({minutes:.0f} min).\n\n"
            f"Each network alone (probability >= 0.5 on its 1 mm grid of the canal box, no forest, no "
            f"post-processing) on the {len(cases)} validation phantoms its training validates on ({n_tumor} with a "
            f"tumor; seeds from `VAL_SEED_BASE`, not the test seeds). Dice: mean 3D Dice over the tumor phantoms, "
            f"overall and per type; inner and end slices: voxel Dice on the tumors' inner sagittal slices and on "
            f"their first and last slices, as in \"Tumor segmentation\"; tumor slices missed wholly: sagittal "
            f"slices holding tumor where the network marks none of its pixels (no threshold or outline step "
            f"recovers those), of all slices holding tumor. "
            f"Validation figures, for choosing between networks.\n\n" + header + "\n".join(rows) + "\n\n"
            + "\n".join(f"- {label}: `{r['command']}`" for label, r in results.items() if r["command"]))
    print(body)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if not args.no_write:
        write_section(TITLE, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
