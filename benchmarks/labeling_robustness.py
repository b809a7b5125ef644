"""Benchmark: how the vertebra labeling holds up when the acquisition changes.

The three held-out Chu cases (chu_17, chu_18, chu_19; 1 mm isotropic, 8-bit) are changed the
way other scanners and protocols differ from them, then labeled end to end
(:func:`spinetumor.labeling.infer.label_vertebrae`, post-processing included) and scored
against their reference labels carried through the same change:

* thick sagittal slices (3 and 5 mm): each new slice is the mean of 3 or 5 consecutive 1 mm
  slices (a thick slice integrates its slab); its labels are those of the slab's centre slice;
* in-plane spacing 0.6 and 1.4 mm: each sagittal slice resampled with the labeling's own
  interpolation matrices (averaging when the grid gets coarser), labels by nearest sample;
* intensities: gamma 0.6 and 1.6, a 12-bit range (x 16 + 100), a smooth multiplicative bias
  field (up to about x 1.6 across the image), Rician noise (sigma 8 on the 8-bit scale);
* in-plane rotation of the anatomy by +-8 degrees (linear interpolation; labels nearest);
* the same voxels stored in another array order (LPS instead of the source's RPI): the
  result must not change at all.

Scores: mean Dice over the levels present, VerSe identification rate, all seven levels right,
mean HD95; and, for each change, the changed cases cut at the T12-L1 disc (a lumbar field of view
starting at L1, as ``benchmarks/labeling.py`` cuts them): mean Dice and all levels right. The
result goes into the "Vertebra labeling: robustness to acquisition" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/labeling_robustness.py [--data ../shared/data/chu_lumbar_t2] [--model CANDIDATE]

``--model`` scores a candidate instead (as ``benchmarks.labeling.labeling_model`` reads it:
weights, a run folder, a run's checkpoint file or a FINDER+NAMER pair); its table is printed, not written to the docs.
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

from benchmarks._report import machine, write_section  # noqa: E402
from benchmarks.labeling import crop_at_disc  # noqa: E402

from spinetumor.labeling.dataset import CHU_VALIDATION, interpolation_matrix, load_chu_case, nearest_indices  # noqa: E402
from spinetumor.volume import Volume, to_canonical  # noqa: E402

SECTION = "Vertebra labeling: robustness to acquisition"


def canonical_pair(image: Volume, truth: Volume) -> tuple[Volume, Volume]:
    """Image and labels reoriented exactly to the canonical sagittal stack ([s, r, c])."""
    return to_canonical(image)[0], to_canonical(truth)[0]


def thick_slices(image: Volume, truth: Volume, factor: int) -> tuple[Volume, Volume]:
    """Slabs of ``factor`` consecutive sagittal slices averaged into one slice; labels of each
    slab's centre slice (:func:`spinetumor.augmentation.thick_slices.thick_acquisition` on the
    canonical stack)."""
    from spinetumor.augmentation.thick_slices import thick_acquisition

    ci, ct = canonical_pair(image, truth)
    thick, (labels,) = thick_acquisition(ci, factor, [ct])
    return thick, labels


def in_plane_spacing(image: Volume, truth: Volume, step_mm: float) -> tuple[Volume, Volume]:
    """Every sagittal slice resampled to ``step_mm`` in-plane (first samples kept in place)."""
    ci, ct = canonical_pair(image, truth)
    _, rows, cols = ci.shape
    sp_c, sp_r = ci.spacing[0], ci.spacing[1]          # canonical i = columns, j = rows
    n_r, n_c = int(rows * sp_r / step_mm), int(cols * sp_c / step_mm)
    wr = interpolation_matrix(rows, sp_r, n_r, step_mm)
    wc = interpolation_matrix(cols, sp_c, n_c, step_mm)
    img = np.einsum("rj,sjk,ck->src", wr, ci.array.astype(np.float32), wc, optimize=True)
    ir = nearest_indices(rows, sp_r, n_r, step_mm)
    ic = nearest_indices(cols, sp_c, n_c, step_mm)
    lab = ct.array[:, np.clip(ir, 0, rows - 1)][:, :, np.clip(ic, 0, cols - 1)]
    spacing = (step_mm, step_mm, ci.spacing[2])
    return (Volume(img.astype(np.float32), spacing, ci.origin, ci.direction),
            Volume(np.ascontiguousarray(lab), spacing, ci.origin, ci.direction))


def intensity_change(image: Volume, truth: Volume, kind: str) -> tuple[Volume, Volume]:
    """The image with one scanner-like intensity change (labels unchanged)."""
    ci, ct = canonical_pair(image, truth)
    a = ci.array.astype(np.float32)
    top = float(a.max())
    if kind.startswith("gamma"):
        a = top * (a / top) ** float(kind[len("gamma "):])
    elif kind == "12-bit range":
        a = a * 16.0 + 100.0
    elif kind == "bias field":
        r = np.linspace(-1, 1, a.shape[1], dtype=np.float32)[None, :, None]
        c = np.linspace(-1, 1, a.shape[2], dtype=np.float32)[None, None, :]
        a = a * np.exp(0.25 * c + 0.25 * r * r)
    elif kind == "Rician noise":
        rng = np.random.default_rng(0)
        a = np.sqrt((a + rng.normal(0, 8, a.shape)) ** 2 + rng.normal(0, 8, a.shape) ** 2)
    else:
        raise ValueError(kind)
    return ci.with_array(a.astype(np.float32)), ct


def rotated(image: Volume, truth: Volume, degrees: float) -> tuple[Volume, Volume]:
    """The anatomy turned in every sagittal slice by ``degrees`` about the slice centre."""
    from scipy import ndimage

    ci, ct = canonical_pair(image, truth)
    img = ndimage.rotate(ci.array.astype(np.float32), degrees, axes=(1, 2), reshape=False, order=1, mode="nearest")
    lab = ndimage.rotate(ct.array, degrees, axes=(1, 2), reshape=False, order=0, mode="constant")
    return ci.with_array(img), ct.with_array(lab)


#: Axis permutation and flips applied to the canonical stack by :func:`reordered`.
REORDER = ((1, 2, 0), (True, False, True))


def reordered(image: Volume, truth: Volume) -> tuple[Volume, Volume]:
    """The same voxels stored in another array order (an exact permutation and flips of the
    canonical stack's axes, :data:`REORDER`; the condition's name gives the orientation code)."""
    from spinetumor.volume import Reorientation, reorient

    ci, ct = canonical_pair(image, truth)
    reo = Reorientation(*REORDER)
    return reorient(ci, reo), reorient(ct, reo)


CONDITIONS = [
    ("as distributed (1 mm isotropic)", lambda i, t: (i, t)),
    ("sagittal slices 3 mm thick", lambda i, t: thick_slices(i, t, 3)),
    ("sagittal slices 5 mm thick", lambda i, t: thick_slices(i, t, 5)),
    ("in-plane 0.6 mm", lambda i, t: in_plane_spacing(i, t, 0.6)),
    ("in-plane 1.4 mm", lambda i, t: in_plane_spacing(i, t, 1.4)),
    ("gamma 0.6", lambda i, t: intensity_change(i, t, "gamma 0.6")),
    ("gamma 1.6", lambda i, t: intensity_change(i, t, "gamma 1.6")),
    ("12-bit range", lambda i, t: intensity_change(i, t, "12-bit range")),
    ("bias field", lambda i, t: intensity_change(i, t, "bias field")),
    ("Rician noise", lambda i, t: intensity_change(i, t, "Rician noise")),
    ("rotated +8 degrees", lambda i, t: rotated(i, t, 8.0)),
    ("rotated -8 degrees", lambda i, t: rotated(i, t, -8.0)),
    ("stored as LPS (another array order)", reordered),
]


def mean_hd95(result: dict) -> float:
    """Mean HD95 (mm) over the finite per-level values of all cases."""
    values = [v for case in result["per_case"].values() for v in case["hd95_mm"].values() if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def report(rows: list[dict], seconds: float, model_name: str = "The shipped labeling model") -> str:
    """The docs section: what was changed, and one table row per condition."""
    lines = [f"Machine: {machine()}. Script: `benchmarks/labeling_robustness.py` ({seconds / 60:.0f} min). "
             f"{model_name} on the three held-out Chu cases (chu_17, chu_18, chu_19), each changed "
             "as another scanner or protocol would change it; the reference labels go through the same change "
             "(see the script's docstring for each). Scores as in \"Vertebra labeling\": mean Dice over the "
             "levels present, identification rate, cases with all seven levels right, mean HD95 over levels. "
             "The last two columns: the same changed cases cut at the T12-L1 disc (`benchmarks/labeling.py`'s "
             "`crop_at_disc`: a lumbar field of view starting at L1, the sacrum in view), mean Dice over L1..L5 and "
             "cases with all levels right.",
             "",
             "| condition | voxels i, j, k (first case) | mean Dice | identification rate | all levels right | HD95 mm (mean) "
             "| cut at T12-L1: mean Dice | cut at T12-L1: all levels right |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['condition']} | {row['geometry']} | {row['mean_dice']:.3f} | "
                     f"{row['identification_rate']:.3f} | {row['all_levels_right']} | {row['hd95_mm']:.1f} | "
                     f"{row['cut_mean_dice']:.3f} | {row['cut_all_levels_right']} |")
    base = rows[0]
    worst = min(rows, key=lambda r: r["mean_dice"])
    lines += ["", f"Lowest mean Dice: {worst['mean_dice']:.3f} ({worst['condition']}), against {base['mean_dice']:.3f} "
              "unchanged. Three cases of one scanner are a small sample: these rows say which changes the model "
              "tolerates, not how it does on another site's scans. Fields of view that end above the sacrum are "
              "in \"Vertebra labeling\" (the model's known weakness).",
              "",
              "The cut columns are not held out for the post-processing's sacrum-top rule: its second part (the body "
              "on the top of the sacrum is L5, counted up from there) was written on 2026-12-07 after these columns "
              "showed chu_19 cut at T12-L1 named one level too high under gamma 1.6, the bias field and the +8 degree "
              "rotation (2/3 in those three rows, 3/3 in the others, with the first part alone)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    import torch

    from spinetumor.labeling.model import load_model
    from spinetumor.labeling.ship import evaluate_cases

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "chu_lumbar_t2"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=str(REPO / "runs" / "labeling" / "robustness.json"))
    p.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--model", default=None, metavar="CANDIDATE",
                   help="score this labeling model instead of the shipped one (printed, not written to the docs)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.model:
        from benchmarks.labeling import labeling_model

        model = labeling_model(args.model)
    else:
        model = load_model()
    chu = [(name, *load_chu_case(args.data, name)) for name in CHU_VALIDATION]
    rows = []
    for condition, change in CONDITIONS:
        cases = [(f"{name} {condition}", *change(image, truth)) for name, image, truth in chu]
        result = evaluate_cases(model, cases)
        cut = evaluate_cases(model, [(f"{name} below T12", *crop_at_disc(image, truth, 2, "below"))
                                     for name, image, truth in cases])
        first = cases[0][1]
        rows.append({"condition": condition, "mean_dice": result["mean_dice"],
                     "identification_rate": result["identification_rate"],
                     "all_levels_right": result["all_levels_right"], "hd95_mm": mean_hd95(result),
                     "geometry": f"{first.shape[::-1]} of {tuple(round(s, 2) for s in first.spacing)} mm",
                     "per_case": result["per_case"], "cut_mean_dice": cut["mean_dice"],
                     "cut_all_levels_right": cut["all_levels_right"], "cut_per_case": cut["per_case"]})
        print(f"{condition}: Dice {result['mean_dice']:.3f}, identification {result['identification_rate']:.3f}, "
              f"all right {result['all_levels_right']}; cut at T12-L1: Dice {cut['mean_dice']:.3f}, "
              f"all right {cut['all_levels_right']}", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    text = report(rows, time.time() - t0, f"Candidate {args.model}" if args.model else "The shipped labeling model")
    print(text)
    if not (args.no_write or args.model):
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
