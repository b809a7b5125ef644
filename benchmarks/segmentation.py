"""Tumor segmentation benchmark: the paper's ablation (Section IV.E) measured on held-out phantoms.

    .venv/bin/python benchmarks/segmentation.py [--train-cases 32] [--val-cases 16] [--per-type 6] [--free 12]
                                                [--net spinetumor/models/tumor_net.safetensors]

Four variants, each trained on the same training phantoms and given its own threshold and
minimum volume on the same validation phantoms (``spinetumor.segmentation.train``):
random forest alone vs fuzzy c-means + random forest (memberships as features and the
slice selection), each with the shearlet denoiser or none. With ``--net`` the four forests
also take the tumor network's probability (``spinetumor.segmentation.tumor_net``) and a
fifth row, FCM + RF with the shearlet and without the network, shows what the network adds.
The default variant (FCM + RF, shearlet, with the network when given) is the shipped model
when its manifest says it was trained on exactly these phantoms (and that network) and on
nothing else; forests trained here with the network draw their tumors along its outline
(``train_model(net_outline=True)``), as the shipped one does.
Test phantoms come from ``TEST_SEED_BASE`` (never used in training or validation):
``--per-type`` of each tumor type and ``--free`` tumor-free ones. Reported: Dice, IoU,
precision, recall and voxel accuracy per type and overall (mean +- sd over cases), the
share of tumor-free phantoms where nothing is found, the tumor voxels lost by the slice
selection and by the region of interest, and the time of ``segment_tumor`` (canal step
included) on a 512 x 512 x 15 volume. Results go to docs/benchmarks.md, "Tumor segmentation".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import machine, outline_phrase, write_section  # noqa: E402

VARIANTS = (("FCM + RF", "shearlet", 4), ("FCM + RF", "none", 4), ("RF alone", "shearlet", 0), ("RF alone", "none", 0))
NET_PREFIX = "net + "


def variants(net) -> list[tuple]:
    """(name, denoiser, clusters, network or None) of every row; the default variant first."""
    rows = [(NET_PREFIX + n if net else n, d, c, net) for n, d, c in VARIANTS]
    return rows + ([("FCM + RF", "shearlet", 4, None)] if net else [])
METRICS = ("dice", "iou", "precision", "recall", "accuracy")


def test_plan(per_type: int, free: int, seed: int) -> list:
    """Held-out phantoms: ``per_type`` of each tumor type, ``free`` tumor-free (seeds from TEST_SEED_BASE)."""
    from spinetumor.segmentation.train import TEST_SEED_BASE, free_plan, phantom_plan

    return phantom_plan(TEST_SEED_BASE, 4 * per_type, seed) + free_plan(TEST_SEED_BASE, max(0, free - per_type), seed)


def get_model(name, denoiser, clusters, args, prepared, net=None):
    """The shipped model for the default variant when it matches this training set, else a fresh one.

    For the ablation (not ``--shipped-only``) the shipped forest only stands in when it was
    trained on these phantoms alone: one trained with real anatomy too (``--extra``) would
    mix that data into the comparison with the other variants, which see phantoms only.
    """
    from spinetumor.segmentation.train import TRAIN_SEED_BASE, phantom_plan, train_model
    from spinetumor.segmentation.tumor import DEFAULT_MODEL, TumorModelError, load_tumor_model

    if clusters and denoiser == "shearlet" and DEFAULT_MODEL.exists():
        try:
            shipped = load_tumor_model()
        except TumorModelError:
            shipped = None
        if shipped is not None:
            want = [s for s, _, _ in phantom_plan(TRAIN_SEED_BASE, args.train_cases, args.seed)]
            got = shipped.manifest.get("training", {}).get("phantom_seeds", [])
            same_net = (shipped.net.sha256 if shipped.uses_net else None) == (net.sha256 if net else None)
            phantoms_only = not shipped.manifest.get("training", {}).get("extra_cases")
            if shipped.clusters == clusters and shipped.denoiser == denoiser and set(got) <= set(want) \
                    and len(got) >= len(want) - 2 and same_net and (phantoms_only or args.shipped_only):
                print(f"{name}, {denoiser}: the shipped model (trained on these phantoms)", flush=True)
                return shipped, best_setting(shipped.manifest["validation"]["table"])
    t0 = time.perf_counter()
    model, info = train_model(args.train_cases, args.seed, args.val_cases, clusters, denoiser,
                              select_slices=clusters > 0, prepared=prepared, net=net, val_free=args.val_free,
                              net_outline=net is not None)
    print(f"{name}, {denoiser}: trained in {time.perf_counter() - t0:.0f} s, threshold {model.threshold}, "
          f"min volume {model.min_volume_mm3} mm3", flush=True)
    return model, best_setting(info["validation"]["table"])


def best_setting(table) -> tuple[float, float]:
    """The (threshold, minimum volume) of the best validation Dice, ignoring the tumor-free constraint."""
    dice = np.asarray(table["dice"])
    i, j = np.unravel_index(int(np.argmax(dice)), dice.shape)
    return float(table["thresholds"][i]), float(table["min_volumes_mm3"][j])


def evaluate(model, prep, best) -> dict:
    """Metrics of one prepared test case under ``model`` (its threshold and minimum volume), and
    under ``best`` (the best-validation-Dice setting) as ``best_*``."""
    from spinetumor.metrics import overlap
    from spinetumor.segmentation.features import ROI_MM
    from spinetumor.segmentation.tumor import network_outline, postprocess, segment_canonical

    t0 = time.perf_counter()
    box, prob, dist, stack = segment_canonical(model, prep.image, prep.spacing, prep.canal, prep.cord,
                                               prep.vertebrae)
    vert = prep.vertebrae[box] if prep.vertebrae is not None else None
    outline = network_outline(model, stack, prob.shape)
    pred = np.zeros(prep.truth.shape, bool)
    pred[box] = postprocess(prob, model.threshold, model.min_volume_mm3, prep.spacing, dist, vert, outline=outline)
    seconds = time.perf_counter() - t0
    m = overlap(pred, prep.truth)
    pred_best = np.zeros(prep.truth.shape, bool)
    pred_best[box] = postprocess(prob, best[0], best[1], prep.spacing, dist, vert, outline=outline)
    mb = overlap(pred_best, prep.truth)
    truth_box = prep.truth[box]
    n_truth = int(prep.truth.sum())
    outside_roi = n_truth - int(truth_box.sum()) + int((truth_box & (dist > ROI_MM)).sum())
    dropped = np.setdiff1d(np.arange(box[0].start, box[0].stop), stack.slices_kept)
    lost_slices = int(prep.truth[dropped].sum()) if dropped.size else 0
    return {**{k: m[k] for k in METRICS}, **{f"best_{k}": mb[k] for k in METRICS},
            **error_breakdown(pred, prep.truth, prep.spacing), **slice_role_counts(pred, prep.truth),
            "best_found": bool(pred_best.any()), "found": bool(pred.any()), "truth_voxels": n_truth,
            "outside_roi": outside_roi, "lost_by_slices": lost_slices, "seconds": seconds,
            "slices": int(box[0].stop - box[0].start), "slices_kept": int(len(stack.slices_kept))}


#: Errors within this in-plane distance (mm) of a tumor's edge count as boundary errors.
EDGE_MM = 2.0


def error_breakdown(pred: np.ndarray, truth: np.ndarray, spacing) -> dict:
    """Where one case's errors lie, in voxels: why the Dice is what it is.

    Missed voxels (``fn_*``): in a tumor the prediction does not touch at all (``fn_missed``),
    within :data:`EDGE_MM` in-plane of the tumor's edge (``fn_edge``: under-extent), or deeper
    (``fn_inner``). False positives (``fp_*``): within :data:`EDGE_MM` in-plane of a tumor
    (``fp_edge``: over-extent) or farther (``fp_far``: false findings). In-plane distances on the
    canonical grid (``spacing`` per array axis, mm), so thick slices do not blur them.
    """
    from scipy import ndimage

    in_plane = (1e6, float(spacing[1]), float(spacing[2]))
    fn, fp = truth & ~pred, pred & ~truth
    lab, n = ndimage.label(truth, structure=ndimage.generate_binary_structure(3, 2))
    touched = np.unique(lab[truth & pred])
    missed = fn & ~np.isin(lab, touched)
    depth = ndimage.distance_transform_edt(truth, sampling=in_plane) if truth.any() else np.zeros(truth.shape)
    gap = ndimage.distance_transform_edt(~truth, sampling=in_plane) if truth.any() else np.full(truth.shape, np.inf)
    edge = fn & ~missed & (depth <= EDGE_MM)
    return {"fn_missed": int(missed.sum()), "fn_edge": int(edge.sum()), "fn_inner": int((fn & ~missed & ~edge).sum()),
            "fp_edge": int((fp & (gap <= EDGE_MM)).sum()), "fp_far": int((fp & (gap > EDGE_MM)).sum())}


def slice_role_counts(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Voxel counts by the sagittal slice they lie on, relative to each true tumor's extent.

    A tumor's *end slices* are the first and last of the slices (array axis 0) it spans, its
    *inner slices* those between; on thick slices the end slices are where partial volume
    makes the edge ambiguous (the reference mask is the slab's centre, the image its mean).
    Returns true positives, false positives and false negatives on inner slices
    (``inner_slice_tp`` ...), on end slices (``end_slice_*``) and, for false positives, on
    slices no tumor spans (``beyond_slice_fp``). A slice that is inner to one tumor and an end
    of another counts as inner.
    """
    from scipy import ndimage

    lab, _ = ndimage.label(truth, structure=ndimage.generate_binary_structure(3, 2))
    inner = np.zeros(truth.shape[0], bool)
    end = np.zeros(truth.shape[0], bool)
    for box in ndimage.find_objects(lab):
        first, last = box[0].start, box[0].stop - 1
        end[[first, last]] = True
        inner[first + 1:last] = True
    end &= ~inner
    out = {}
    for name, rows in (("inner", inner), ("end", end)):
        p, t = pred[rows], truth[rows]
        out.update({f"{name}_slice_tp": int((p & t).sum()), f"{name}_slice_fp": int((p & ~t).sum()),
                    f"{name}_slice_fn": int((~p & t).sum())})
    out["beyond_slice_fp"] = int(pred[~(inner | end)].sum())
    return out


def slice_role_dice(counts: dict, name: str) -> float:
    """Voxel Dice on the tumors' ``"inner"`` or ``"end"`` slices from (summed) :func:`slice_role_counts`."""
    tp, fp, fn = (counts[f"{name}_slice_{k}"] for k in ("tp", "fp", "fn"))
    return 2 * tp / max(2 * tp + fp + fn, 1)


def slice_role_sentence(tumor_results: list) -> str:
    """One sentence on the Dice of the tumors' inner and end slices (:func:`slice_role_counts`)."""
    total = {k: sum(r[k] for r in tumor_results) for k in tumor_results[0] if "_slice_" in k}

    def dice(name: str) -> str:
        return f"{slice_role_dice(total, name):.3f} ({total[f'{name}_slice_tp'] + total[f'{name}_slice_fn']} tumor voxels)"

    wrong = {name: total[f"{name}_slice_fp"] + total[f"{name}_slice_fn"] for name in ("inner", "end")}
    wrong["end"] += total["beyond_slice_fp"]
    return (f"By sagittal slice (the same cases): on the tumors' inner slices the voxel Dice is {dice('inner')}, "
            f"on their first and last slices {dice('end')}; the end slices and the slices beyond them hold "
            f"{wrong['end'] / max(sum(wrong.values()), 1):.0%} of the wrong voxels. On thick slices an end slice "
            f"images part of the tumor (the slab's mean) while the reference marks the slab's centre, so this "
            f"is where the outline is least determined by the image.")


def error_sentence(tumor_results: list) -> str:
    """One sentence on where the missed and the false voxels of the tumor cases lie."""
    total = {k: sum(r[k] for r in tumor_results) for k in ("fn_missed", "fn_edge", "fn_inner", "fp_edge", "fp_far")}
    truth = sum(r["truth_voxels"] for r in tumor_results)
    fp = total["fp_edge"] + total["fp_far"]
    missed = sum(r["fn_missed"] == r["truth_voxels"] and r["truth_voxels"] > 0 for r in tumor_results)
    return (f"Where the errors are (the setting chosen for use, {len(tumor_results)} tumor phantoms, {truth} tumor voxels): "
            f"{total['fn_missed'] / truth:.0%} of the tumor voxels are in tumors not touched at all "
            f"({missed} phantoms found nothing of their tumor), {total['fn_edge'] / truth:.0%} are missed within "
            f"{EDGE_MM:g} mm of a tumor's edge (under-extent) and {total['fn_inner'] / truth:.0%} deeper; of the "
            f"{fp} false-positive voxels, {total['fp_edge'] / max(fp, 1):.0%} lie within {EDGE_MM:g} mm of a tumor "
            f"(over-extent) and {total['fp_far'] / max(fp, 1):.0%} farther (false findings).")


def timing_volume(seed: int = 39_999):
    """A 512 x 512 x 15 sagittal phantom volume (a phantom resampled over its own extent)."""
    from spinetumor.phantom import generate
    from spinetumor.volume import resample_to_grid, to_canonical

    case = generate(seed, "extradural", orientation="canonical", oblique_deg=0.0, slice_thickness=5.0)
    canon = to_canonical(case.image)[0]
    size = (512, 512, 15)
    extent = np.asarray(canon.shape[::-1]) * np.asarray(canon.spacing)
    spacing = tuple(extent / np.asarray(size))
    return resample_to_grid(canon, size, spacing, canon.origin, canon.direction)


def time_segmentation(model, repeats: int = 3) -> float:
    """Median seconds of ``segment_tumor`` (canal step included) on the 512 x 512 x 15 volume."""
    from spinetumor.segmentation.tumor import segment_tumor

    volume = timing_volume()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        segment_tumor(volume, model=model)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def fmt(values) -> str:
    values = np.asarray(values, float)
    return f"{values.mean():.3f} ± {values.std():.3f}" if values.size else "-"


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--train-cases", type=int, default=32)
    p.add_argument("--val-cases", type=int, default=16)
    p.add_argument("--val-free", type=int, default=16,
                   help="tumor-free validation phantoms beside --val-cases (the shipped forest's command uses 16)")
    p.add_argument("--per-type", type=int, default=6)
    p.add_argument("--free", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--net", default=None, help="tumor network weights the forests also take (see the docstring)")
    p.add_argument("--denoisers", nargs="+", default=None,
                   help="instead of the ablation, train the default variant once per denoiser named (e.g. "
                        "none gaussian curvature bilateral shearlet) and write \"Denoising: the tumor Dice it leads to\"")
    p.add_argument("--shipped-only", action="store_true",
                   help="score the shipped forest alone (no ablation forests trained); writes the section "
                        "\"Tumor segmentation: shipped model\"")
    args = p.parse_args(argv)
    from spinetumor.segmentation.train import prepare_case
    from spinetumor.segmentation.tumor import load_tumor_model
    from spinetumor.segmentation.tumor_net import load_tumor_net

    shipped = load_tumor_model() if args.shipped_only and not args.net else None
    if shipped is not None and shipped.uses_net:
        # without it the default variant would not match the shipped forest and a fresh one would be trained
        raise SystemExit(f"--shipped-only: the shipped forest takes a tumor network; pass --net {shipped.net.path}")

    start = time.perf_counter()
    prepared: dict = {}
    models = {}
    rows = variants(load_tumor_net(args.net) if args.net else None)
    if args.shipped_only:
        rows = rows[:1]
    if args.denoisers:
        rows = [(rows[0][0], denoiser, rows[0][2], rows[0][3]) for denoiser in args.denoisers]
    # the default variant last: it may be the shipped model, trained meanwhile by the CLI
    for name, denoiser, clusters, net in rows[1:] + rows[:1]:
        models[(name, denoiser)] = get_model(name, denoiser, clusters, args, prepared, net)
    models = {(n, d): models[(n, d)] for n, d, _, _ in rows}
    prepared.clear()
    plan = test_plan(args.per_type, args.free, args.seed)
    results = {key: [] for key in models}
    kinds, skipped = [], []
    for n, item in enumerate(plan):
        prep = prepare_case(*item)
        if prep is None:
            skipped.append(item[:2])
            continue
        kinds.append(prep.kind)
        for key, (model, best) in models.items():
            results[key].append(evaluate(model, prep, best))
        print(f"test {n + 1}/{len(plan)} {prep.kind}: " + ", ".join(
            f"{k[0]}/{k[1]} {results[k][-1]['dice']:.2f}" for k in models), flush=True)
    if args.denoisers:
        body = denoiser_report(models, results, kinds, args, time.perf_counter() - start)
        print(body)
        if not args.no_write:
            write_section(DENOISER_SECTION, body)
        return 0
    prefix = NET_PREFIX if args.net else ""
    default = models[(prefix + "FCM + RF", "shearlet")][0]
    seconds_512 = time_segmentation(default)
    if args.shipped_only:
        if not default.path:
            raise SystemExit("--shipped-only: the shipped forest was not trained on these phantoms with this network")
        body = shipped_report(models, results, kinds, args, seconds_512, time.perf_counter() - start)
    else:
        seconds_512_none = time_segmentation(models[(prefix + "FCM + RF", "none")][0])
        body = report(models, results, kinds, skipped, args, seconds_512, seconds_512_none,
                      time.perf_counter() - start)
    print(body)
    if args.json:
        Path(args.json).write_text(json.dumps({"kinds": kinds, "results": {f"{k[0]}|{k[1]}": v
                                                                            for k, v in results.items()}},
                                              indent=1, default=float))
    if not args.no_write:
        write_section("Tumor segmentation: shipped model" if args.shipped_only else "Tumor segmentation", body)
    return 0


def findings(results: dict, kinds, prefix: str = "") -> str:
    """Sentences comparing the variants (denoiser and FCM effects) from the per-case results.

    ``results`` maps (variant, denoiser) to per-case dicts as :func:`evaluate` returns them.
    """
    kinds = list(kinds)

    def mean(key, metric):
        vals = [r[metric] for r, k in zip(results[key], kinds) if k != "none"]
        return float(np.mean(vals)) if vals else float("nan")

    def clean(key, prefix=""):
        free = [r for r, k in zip(results[key], kinds) if k == "none"]
        return sum(not r[f"{prefix}found"] for r in free), len(free)

    fs, fn = (prefix + "FCM + RF", "shearlet"), (prefix + "FCM + RF", "none")
    rs, rn = (prefix + "RF alone", "shearlet"), (prefix + "RF alone", "none")
    lines = [f"Forests named \"{prefix.strip(' +')} + ...\" also take the tumor network's probability." if prefix else "",
        f"Denoising: with the shearlet the FCM + RF forest reaches a mean tumor Dice of "
        f"{mean(fs, 'best_dice'):.3f} at its best-validation setting, without denoising {mean(fn, 'best_dice'):.3f} "
        f"(RF alone: {mean(rs, 'best_dice'):.3f} vs {mean(rn, 'best_dice'):.3f}).",
        f"Fuzzy c-means: FCM + RF vs RF alone, mean tumor Dice at the best-validation setting "
        f"{mean(fs, 'best_dice'):.3f} vs {mean(rs, 'best_dice'):.3f} (shearlet), {mean(fn, 'best_dice'):.3f} vs "
        f"{mean(rn, 'best_dice'):.3f} (no denoising); the paper reports 94 % vs 99 % voxel accuracy, and voxel "
        f"accuracy here is {mean(fs, 'best_accuracy'):.4f} vs {mean(rs, 'best_accuracy'):.4f}, which says nothing "
        f"about the tumors.",
        f"At the setting chosen for use (as for the shipped forest: at least 95 % of the tumor-free validation "
        f"phantoms empty) "
        f"{clean(fs)[0]}/{clean(fs)[1]} tumor-free test phantoms stay empty and the mean tumor Dice is "
        f"{mean(fs, 'dice'):.3f}; at the best-validation-Dice setting {clean(fs, 'best_')[0]}/{clean(fs, 'best_')[1]} "
        f"stay empty (targets: Dice >= 0.85 per type, >= 95 % empty).",
    ]
    if prefix:
        base = ("FCM + RF", "shearlet")
        lines.append(f"Without the network, the FCM + RF forest (shearlet) reaches {mean(base, 'dice'):.3f} at its "
                     f"shipped-style setting and {mean(base, 'best_dice'):.3f} at its best-validation setting, against "
                     f"{mean(fs, 'dice'):.3f} and {mean(fs, 'best_dice'):.3f} with it.")
    return " ".join(x for x in lines if x)


def report(models, results, kinds, skipped, args, seconds_512, seconds_512_none, total) -> str:
    """The markdown section."""
    kinds = np.asarray(kinds)
    types = ("intramedullary", "intradural-extramedullary", "extradural")
    lines = [f"Machine: {machine()}. Script: `benchmarks/segmentation.py` "
             f"(--train-cases {args.train_cases} --val-cases {args.val_cases} --val-free {args.val_free} "
             f"--per-type {args.per_type} "
             f"--free {args.free} --seed {args.seed}" + (f" --net {args.net}" if args.net else "")
             + f"; {total / 60:.0f} min wall).",
             "",
             f"Held-out phantoms (seeds from `TEST_SEED_BASE`, never used for training or validation): "
             f"{', '.join(f'{int((kinds == t).sum())} {t}' for t in types)}, "
             f"{int((kinds == 'none').sum())} tumor-free"
             + (f"; skipped (no canal found): {skipped}" if skipped else "") + ". "
             "Each variant was trained here on the same training phantoms (no real anatomy, unlike the shipped "
             "forest, which is scored in \"Tumor segmentation: shipped model\") and given its own threshold and "
             "minimum component volume on the same validation phantoms; " + ablation_outlines(models) + " Metrics per case on the input grid "
             "(`spinetumor.metrics.overlap`), mean ± sd over cases; voxel accuracy counts true negatives "
             "of the whole volume and is near 1 for any prediction.",
             "",
             "| variant | denoiser | threshold / min mm³ | tumors | Dice | IoU | precision | recall | voxel accuracy "
             "| tumor-free with nothing found |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += table_rows(models, results, kinds, best=False)
    lines += ["", "The same forests at the setting with the best validation Dice, ignoring the tumor-free "
              "constraint (what the forests can delineate when false positives are tolerated):", "",
              "| variant | denoiser | threshold / min mm³ | tumors | Dice | IoU | precision | recall | voxel accuracy "
              "| tumor-free with nothing found |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += table_rows(models, results, kinds, best=True)
    prefix = NET_PREFIX if args.net else ""
    lines += ["", *shipped_notes(results[(prefix + "FCM + RF", "shearlet")], kinds, prefix, seconds_512,
                                 seconds_512_none)]
    lines += ["", findings(results, kinds, prefix)]
    return "\n".join(lines)


TYPES = ("intramedullary", "intradural-extramedullary", "extradural")
TABLE_HEAD = ["| variant | denoiser | threshold / min mm³ | tumors | Dice | IoU | precision | recall | voxel accuracy "
              "| tumor-free with nothing found |", "|---|---|---|---|---|---|---|---|---|---|"]


def table_rows(models, results, kinds, best: bool) -> list[str]:
    """Table rows per variant and tumor type, at the shipped setting or (``best``) the best-validation one."""
    key = "best_" if best else ""
    lines = []
    for (name, denoiser), (model, best_setting_) in models.items():
        res = results[(name, denoiser)]
        free = [r for r, k in zip(res, kinds) if k == "none"]
        clean = f"{sum(not r[key + 'found'] for r in free)}/{len(free)}"
        setting = best_setting_ if best else (model.threshold, model.min_volume_mm3)
        for t in TYPES + ("all",):
            sel = [r for r, k in zip(res, kinds) if (k == t if t != "all" else k != "none")]
            cells = [fmt([r[key + m] for r in sel]) for m in METRICS]
            lines.append(f"| {name} | {denoiser} | {setting[0]:g} / {setting[1]:g} | {t} ({len(sel)}) | "
                         + " | ".join(cells) + f" | {clean if t == 'all' else ''} |")
    return lines


def shipped_notes(default: list, kinds, prefix: str, seconds_512: float, seconds_512_none: float | None) -> list[str]:
    """Slice selection, region of interest and time of the default variant."""
    from spinetumor.segmentation.features import ROI_MM

    tumor = [r for r, k in zip(default, kinds) if k != "none"]
    total_truth = sum(r["truth_voxels"] for r in tumor)
    lost = sum(r["lost_by_slices"] for r in tumor)
    outside = sum(r["outside_roi"] for r in tumor)
    kept = np.mean([r["slices_kept"] / max(r["slices"], 1) for r in default])
    secs = np.mean([r["seconds"] for r in default])
    none = f", {seconds_512_none:.1f} s without denoising" if seconds_512_none is not None else ""
    return [error_sentence(tumor), "", slice_role_sentence(tumor), "",
            f"Slice selection ({prefix}FCM + RF, shearlet): {kept:.0%} of the slices of the canal box kept on average; "
            f"tumor voxels in dropped slices: {lost} of {total_truth}. Tumor voxels outside the region of "
            f"interest (farther than {ROI_MM:g} mm from the found sac): {outside} of {total_truth}.",
            "",
            f"Time of `segment_tumor` on a 512 x 512 x 15 volume (canal step included, median of 3): "
            f"{seconds_512:.1f} s with the shearlet{none}; features + forest on the test phantoms: "
            f"{secs:.1f} s per case on average."]


def network_sentence(model) -> str:
    """How the forest's tumor network was trained, from its manifest."""
    manifest = model.net.manifest if model.uses_net else {}
    if not manifest:
        return "The shipped forest takes no tumor network."
    train, val = manifest.get("training", {}), manifest.get("validation", {})
    start = (f"fine-tuned from the network with sha256 {str(manifest['init_sha256'])[:12]}..."
             if manifest.get("init_sha256") else "trained from random weights")
    return (f"Its network was {start} on {train.get('phantoms')} network phantoms, "
            f"{len(manifest.get('extra_datasets') or {})} augmented real-anatomy dataset(s) and "
            f"{len(train.get('negatives', []))} tumor-free real scans (hard-negative fraction "
            f"{train.get('hard_negatives', 0)}); validation Dice at 0.5 {val.get('mean_dice_at_0.5', float('nan')):.3f} "
            f"on {train.get('val_cases')} validation phantoms (epoch {int(val.get('epoch', -1)) + 1} of "
            f"{train.get('epochs')}). Command: its manifest, `spinetumor/models/tumor_net.json`.")


def ablation_outlines(models) -> str:
    """Which of the ablation's forests draw their tumors along the network's outline."""
    redrawn = sorted({name for (name, _), (model, _) in models.items() if model.net_boundary is not None})
    if not redrawn:
        return "every forest keeps its own outline."
    if len(redrawn) == len({name for name, _ in models}):
        return "every forest draws each tumor it keeps along the network's outline (step 5)."
    return f"{', '.join(redrawn)} draw each tumor they keep along the network's outline (step 5), the others keep their own."


def outline_sentence(model) -> str:
    """Whose outline the shipped forest's tumors get, as a sentence."""
    return f"Post-processing: {outline_phrase(model.net_boundary)}."


def shipped_report(models, results, kinds, args, seconds_512, total) -> str:
    """The "shipped model" section: the default variant alone, on the same held-out phantoms."""
    (name, denoiser), (model, _) = next(iter(models.items()))
    net = model.manifest.get("tumor_net", {})
    lines = [f"Machine: {machine()}. Script: `benchmarks/segmentation.py --shipped-only` (--train-cases "
             f"{args.train_cases} --val-cases {args.val_cases} --per-type {args.per_type} --free {args.free} "
             f"--seed {args.seed} --net {args.net}; {total / 60:.0f} min).", "",
             f"The shipped forest (`spinetumor/models/tumor_rf.skops`, {name}, {denoiser}) with its tumor network "
             f"(`{net.get('file', '-')}`, sha256 {str(net.get('sha256', ''))[:12]}...) on the same held-out phantoms "
             "as the ablation below; only this variant is retrained when the network changes, so the ablation "
             "rows below name the network they were measured with.", "", network_sentence(model), "",
             outline_sentence(model), "", *TABLE_HEAD,
             *table_rows(models, results, kinds, best=False), "",
             "At the best-validation-Dice setting (tumor-free constraint ignored):", "", *TABLE_HEAD,
             *table_rows(models, results, kinds, best=True), "",
             *shipped_notes(results[(name, denoiser)], kinds, "", seconds_512, None)]
    return "\n".join(lines)


DENOISER_SECTION = "Denoising: the tumor Dice it leads to"


def paired_difference(results: dict, kinds, key, reference, metric: str = "dice") -> tuple[float, float]:
    """Mean and standard error of the per-tumor difference ``key - reference`` in ``metric``."""
    a = [r[metric] for r, k in zip(results[key], kinds) if k != "none"]
    b = [r[metric] for r, k in zip(results[reference], kinds) if k != "none"]
    diff = np.asarray(a) - np.asarray(b)
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")


def denoiser_report(models, results, kinds, args, total) -> str:
    """The section comparing denoisers by the tumor segmentation they lead to (``--denoisers``)."""
    from spinetumor.segmentation.train import DEFAULT_DENOISER

    keys = list(models)
    reference = next((k for k in keys if k[1] == DEFAULT_DENOISER), keys[0])
    lines = [f"Machine: {machine()}. Script: `benchmarks/segmentation.py --denoisers {' '.join(args.denoisers)}` "
             f"(--train-cases {args.train_cases} --val-cases {args.val_cases} --val-free {args.val_free} "
             f"--per-type {args.per_type} --free {args.free} --seed {args.seed}"
             + (f" --net {args.net}" if args.net else "") + f"; {total / 60:.0f} min wall).", "",
             f"The default variant ({reference[0]}) trained once per denoiser on the same training phantoms "
             "(no real anatomy), each given its own threshold and minimum volume on the same validation phantoms "
             "(at least 95 % of the tumor-free ones empty), scored on the held-out phantoms of \"Tumor "
             "segmentation\". The denoiser changes the image the fuzzy c-means memberships and the forest's "
             "intensity features are computed from; " + ablation_outlines(models) + " Each denoiser runs with "
             "the parameters tuned in \"Denoising\".", "", *TABLE_HEAD,
             *table_rows(models, results, kinds, best=False), "",
             "At the best-validation-Dice setting (tumor-free constraint ignored):", "", *TABLE_HEAD,
             *table_rows(models, results, kinds, best=True), ""]
    parts, better = [], []
    for key in keys:
        secs = np.mean([r["seconds"] for r in results[key]])
        if key == reference:
            shipped = " (the shipped forest's)" if key[1] == DEFAULT_DENOISER else ""
            parts.append(f"{key[1]}{shipped} {secs:.1f} s per case")
            continue
        mean, se = paired_difference(results, kinds, key, reference)
        parts.append(f"{key[1]} {mean:+.3f} ± {se:.3f}, {secs:.1f} s per case")
        if mean > 2 * se:
            better.append(key[1])
    verdict = (f"{', '.join(better)} beat {reference[1]} by more than two standard errors: retraining the shipped "
               f"forest with it is the next step." if better else
               f"No denoiser beats {reference[1]} by more than two standard errors, so the shipped forest keeps it.")
    lines.append(f"Per-tumor Dice at the setting chosen for use, paired difference against {reference[1]} (mean ± "
                 f"standard error over {sum(k != 'none' for k in kinds)} tumors), and time of features + forest: "
                 + "; ".join(parts) + ". " + verdict)
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
