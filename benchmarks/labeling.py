"""Benchmark: vertebra labeling (T11..L5) end to end, with the depth and attention ablation.

Every model labels, with :func:`spinetumor.labeling.infer.label_vertebrae` (post-processing
included), the held-out Chu cases (chu_17, chu_18, chu_19), the same cases cropped below the
T12-L1 disc (partial field of view: T11 and T12 must be reported missing), and fresh
tumor-free phantoms (seeds never used in training: thick slices, varied orientation).
Scores: Dice, HD95 and ASSD per level, VerSe identification rate, all levels right.
Also: CPU time of labeling a 381 x 381 x 77 volume. Results go into docs/benchmarks.md,
section "Vertebra labeling".

    .venv/bin/python benchmarks/labeling.py [--ablation runs/labeling/abl_depth4 runs/labeling/abl_noattn]
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

from spinetumor.labeling.dataset import CHU_CASES, CHU_VALIDATION, load_chu_case, phantom_case  # noqa: E402
from spinetumor.labeling.infer import PARTIAL_BODY_ML, SACRUM_VIEW_MM  # noqa: E402
from spinetumor.labeling.postprocess import SACRUM_BELOW_MM, SACRUM_TOP_FRACTION  # noqa: E402
from spinetumor.labeling.ship import evaluate_cases  # noqa: E402
from spinetumor.labels import VERTEBRAE  # noqa: E402


def crop_at_disc(image, truth, upper: int, keep: str):
    """The case cut at the disc between levels ``upper`` and ``upper + 1`` (exact crop, origin moved).

    ``keep="below"`` removes every canonical row above the disc (levels <= ``upper`` then
    missing), ``keep="above"`` every row below it (a field of view ending above the sacrum).
    """
    from spinetumor.volume import to_canonical

    ci, _ = to_canonical(image)
    ct, _ = to_canonical(truth)
    rows_upper = np.nonzero((ct.array == upper).any(axis=(0, 2)))[0]
    rows_lower = np.nonzero((ct.array == upper + 1).any(axis=(0, 2)))[0]
    cut = int((rows_upper.max() + rows_lower.min()) // 2) + 1
    rows = slice(cut, None) if keep == "below" else slice(0, cut)
    img = ci.crop((slice(None), rows, slice(None)))
    lab = ct.crop((slice(None), rows, slice(None))).array.copy()
    lab[(lab <= upper) if keep == "below" else (lab > upper)] = 0
    return img, img.with_array(lab)


def sct_sample(model_pair, folder: Path) -> str:
    """What the model reports on the bundled SCT thoracolumbar sample (no reference labels exist)."""
    from spinetumor.io import read_volume
    from spinetumor.labeling.infer import label_vertebrae

    images = sorted(p for p in folder.glob("*.nii.gz") if "seg" not in p.name)
    if not images:
        return "not available"
    result = label_vertebrae(read_volume(images[0]), device="cpu", model=model_pair)
    found = [f"{lv.name} ({lv.volume_ml:.1f} ml)" for lv in result.levels.values() if lv.present]
    return (f"levels reported: {', '.join(found) or 'none'}; missing: {', '.join(result.missing) or 'none'}; "
            f"found only in part (under {PARTIAL_BODY_ML:g} ml): {', '.join(result.partial_levels()) or 'none'}; "
            f"{result.inferior_margin_mm:.0f} mm of image below the lowest labeled body, so the caution to "
            f"check the names is {'not ' if result.sacrum_in_view() else ''}given; the sacrum-top rule "
            f"{'dropped a candidate' if result.postprocess.get('sacrum_top_voxels') else 'did not fire'}")


def load_run_model(run):
    """(model, manifest-like dict) from a training run (ablation variants and candidates are not shipped).

    ``run`` is a run folder (its ``best.pt``) or a file in one: ``best.pt``, or ``checkpoint.pt``
    for the last epoch's weights (their average when the run kept one, ``train labeling --average``).
    """
    import torch

    from spinetumor.labeling.network import NetConfig, build_unet
    from spinetumor.labeling.train import TrainConfig

    run = Path(run)
    run_dir, weights = (run.parent, run) if run.suffix == ".pt" else (run, run / "best.pt")
    chosen = torch.load(weights, map_location="cpu", weights_only=True)
    config = TrainConfig.from_dict(json.loads(chosen["config"]))
    model = build_unet(NetConfig.from_dict(config.net))
    model.load_state_dict(chosen.get("average") or chosen["model"])
    ckpt = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    history = json.loads(ckpt["history"])
    info = {"config": config, "best_epoch": int(chosen["epoch"]) + 1, "epochs": len(history),
            "seconds": sum(h["seconds"] for h in history), "history": history}
    return model.eval(), info


def labeling_model(spec: str):
    """(model, info) for a labeling model named on a benchmark's command line, ``info["name"]``
    naming it in the tables: weights (.safetensors, sha256-checked; named by their path), a
    training run folder (its best.pt), a run's best.pt or checkpoint.pt (the last epoch; see
    :func:`load_run_model`), or ``FINDER+NAMER``, two of those joined as the shipped pair is
    (:func:`spinetumor.labeling.model.found_and_named`: a body where either finds one, the level
    from the second)."""
    from spinetumor.labeling.model import found_and_named, load_model

    if "+" in spec:
        finder_spec, namer_spec = spec.split("+", 1)
        model = found_and_named(labeling_model(finder_spec)[0], labeling_model(namer_spec)[0])
        return model.eval(), {"name": f"{finder_spec} + {namer_spec}"}
    if spec.endswith(".safetensors"):
        model, manifest = load_model(spec)
        return model, {**manifest, "name": spec}
    model, info = load_run_model(spec)
    which = Path(spec).name if spec.endswith(".pt") else "best.pt"
    return model, {"name": f"{spec} ({which}: epoch {info['best_epoch']} of {info['epochs']})"}


def shipped_description(manifest: dict) -> str:
    """The paragraph on how the shipped labeling model was trained and chosen, from its manifest."""
    tr, size = manifest["training"], f"{manifest['size_bytes'] / 1e6:.1f} MB"
    cfg = tr["config"]
    net = f"{cfg['net']['depth']}-level attention U-Net{{}} with {cfg['net']['base']} base channels"
    data = (f"the Chu cases {', '.join(cfg['train_cases'])} and {cfg['phantoms']} tumor-free phantoms; validation "
            f"cases {', '.join(cfg['val_cases'])} (never trained on)")
    dice_2d = tr["val_dice_2d_grid_by_epoch"]
    head = f"Shipped model: `spinetumor/models/vertebra_labeling.safetensors` (sha256 `{manifest['sha256'][:16]}...`, {size}), "
    if manifest.get("composition", "single") == "single":
        start = (f", starting from the weights of an earlier run, {cfg['init_from']}: see the manifest's command"
                 if cfg.get("init_from") else "")
        return (head + f"a {net.format('')}, trained on CPU for {tr['epochs_run']} epochs of {cfg['samples_per_epoch']} augmented "
                f"256 x 256 slices at 1.5 mm ({tr['training_seconds'] / 60:.0f} min{start}) on {data}; the checkpoint "
                f"with the best validation Dice (epoch {tr.get('best_epoch', tr.get('epoch_shipped'))}) is shipped. "
                "Choosing the epoch on these three cases makes their figures somewhat optimistic: during training "
                f"the 2D validation Dice (1.5 mm grid, every second slice, no post-processing) was {max(dice_2d):.3f} "
                f"at the chosen epoch and {dice_2d[-1]:.3f} at the last one. Only the fresh phantoms below were never "
                "used for any choice.")
    namer = manifest["namer"]
    return (head + f"two {net.format('s')} in one file (`spinetumor.labeling.model.found_and_named`): a voxel is vertebral "
            "body where either network finds one, and the namer says which level. The namer is the model shipped "
            f"before (sha256 `{namer['sha256'][:16]}...`, {namer['training']['epochs_run']} epochs; how it was "
            "trained is in the manifest's `namer` entry). The finder is the namer fine-tuned on CPU for "
            f"{tr['epochs_run']} more epochs of {cfg['samples_per_epoch']} augmented 256 x 256 slices at 1.5 mm "
            f"({tr['training_seconds'] / 60:.0f} min) on {data}, with other scanners' looks (`--appearance "
            f"{cfg['appearance']:g}`) and a weight average (`--average {cfg['average']:g}`); its "
            f"{tr['weights_shipped']} is shipped (2D validation Dice {dice_2d[-1]:.3f}, 1.5 mm grid, every second "
            "slice, no post-processing). The pair and the way its two networks are joined were chosen on these "
            "three cases, the TPTBox and SCT samples and the 13 acquisition changes of \"Vertebra labeling: "
            "robustness to acquisition\" (see \"Another scanner: inserted tumors\"), so those figures are somewhat "
            "optimistic. Only the fresh phantoms below were never used for any choice.")


def timing(model_pair, image, threads: int) -> float:
    """Seconds to label ``image`` on the CPU with ``threads`` torch threads (best of two)."""
    import torch

    from spinetumor.labeling.infer import label_vertebrae

    torch.set_num_threads(threads)
    times = []
    for _ in range(2):
        t0 = time.time()
        label_vertebrae(image, device="cpu", model=model_pair)
        times.append(time.time() - t0)
    return min(times)


def per_level_table(metrics: dict) -> str:
    """Markdown rows: mean Dice / HD95 per level over a set's cases."""
    lines = ["| level | Dice (mean) | Dice (min) | HD95 mm (mean of finite) | cases with the level found |", "|---|---|---|---|---|"]
    for lab in VERTEBRAE:
        d = [c["dice"][lab.value] for c in metrics["per_case"].values() if lab.value in c["dice"]]
        h = [c["hd95_mm"][lab.value] for c in metrics["per_case"].values() if lab.value in c["hd95_mm"]
             and np.isfinite(c["hd95_mm"][lab.value])]
        found = sum(1 for c in metrics["per_case"].values() if lab.value in c["dice"] and c["dice"][lab.value] > 0)
        if not d:
            continue
        lines.append(f"| {lab.key} | {np.mean(d):.3f} | {np.min(d):.3f} | {np.mean(h) if h else float('nan'):.1f} "
                     f"| {found}/{len(d)} |")
    return "\n".join(lines)


def cautioned(metrics) -> str:
    """``"n/m"``: the cases whose labeling asks to check the level names (sacrum not in view)."""
    cases = metrics["per_case"].values()
    return f"{sum(not c['sacrum_in_view'] for c in cases)}/{len(cases)}"


def volume_range(metrics) -> str:
    """``"a-b ml"``: the smallest and largest level volume the model gives over a set's cases."""
    volumes = [v for c in metrics["per_case"].values() for v in c["volumes_ml"].values()]
    return f"{min(volumes):.1f}-{max(volumes):.1f} ml" if volumes else "none"


def margin_range(metrics) -> str:
    """``"a-b mm"``: the least and most image below the lowest labeled body over a set's cases."""
    margins = [c["inferior_margin_mm"] for c in metrics["per_case"].values() if c["inferior_margin_mm"] is not None]
    return f"{min(margins):.0f}-{max(margins):.0f} mm" if margins else "none"


def found_in_part(metrics) -> str:
    """``"n/m"``: the cases with a body found only in part (``LabelingResult.partial_levels``)."""
    cases = metrics["per_case"].values()
    return f"{sum(bool(c['partial_levels']) for c in cases)}/{len(cases)}"


def sacrum_tops(metrics) -> str:
    """How many cases had their lowest candidate dropped as the top of the sacrum, e.g. '1/3'."""
    cases = metrics["per_case"].values()
    return f"{sum(bool(c.get('sacrum_top_dropped')) for c in cases)}/{len(cases)}"


def l5_to_l4_range(data_dir) -> str:
    """The range of L5's volume over L4's in the reference labels of every Chu case, e.g. '0.90-1.08'."""
    ratios = []
    for name in CHU_CASES:
        counts = np.bincount(load_chu_case(data_dir, name)[1].array.ravel(), minlength=8)
        ratios.append(counts[7] / counts[6])
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def summary_row(name, metrics) -> str:
    return (f"| {name} | {metrics['mean_dice']:.3f} | {metrics['identification_rate']:.3f} | "
            f"{metrics['all_levels_right']} |")


def main(argv=None) -> int:
    import torch

    from spinetumor.labeling.model import DEFAULT_WEIGHTS, load_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "chu_lumbar_t2"))
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--ablation", nargs="*", default=[], help="run folders of the ablation variants")
    p.add_argument("--phantoms", type=int, default=6, help="fresh phantoms (seeds 7000..)")
    p.add_argument("--reference-run", default=str(REPO / "runs" / "labeling" / "main"),
                   help="the from-scratch run a fine-tuned shipped model started from (for the equal-epoch comparison)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--docs", default=str(REPO / "docs" / "benchmarks.md"))
    p.add_argument("--json", default=str(REPO / "runs" / "labeling" / "benchmark.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.time()

    chu = [(name, *load_chu_case(args.data, name)) for name in CHU_VALIDATION]
    partial = [(f"{name} below T12", *crop_at_disc(img, lab, 2, "below")) for name, img, lab in chu]
    no_sacrum = [(f"{name} above L4", *crop_at_disc(img, lab, 5, "above")) for name, img, lab in chu]
    phantoms = [(f"phantom {seed}", *phantom_case(seed)) for seed in range(7000, 7000 + args.phantoms)]
    phantom_geom = [f"{img.shape[::-1]} voxels of {tuple(round(s, 2) for s in img.spacing)} mm"
                    for _, img, _ in phantoms]

    shipped = load_model(args.weights)
    manifest = shipped[1]
    models = {"shipped (6 levels, attention)": (shipped, manifest["training"])}
    skipped = []
    for run in args.ablation:
        if not (Path(run) / "best.pt").exists():
            skipped.append(Path(run).name)
            continue
        model, info = load_run_model(run)
        net = info["config"].net
        label = f"{net['depth']} levels, {'attention' if net['attention'] else 'no attention'} ({Path(run).name})"
        models[label] = ((model, {"name": Path(run).name}), info)

    results = {}
    for label, (pair, _) in models.items():
        results[label] = {"chu": evaluate_cases(pair, chu), "partial": evaluate_cases(pair, partial),
                          "no_sacrum": evaluate_cases(pair, no_sacrum), "phantoms": evaluate_cases(pair, phantoms)}
        print(label, {k: (round(v["mean_dice"], 3), round(v["identification_rate"], 3), v["all_levels_right"],
                          f"names to check {cautioned(v)}", f"found in part {found_in_part(v)}",
                          f"volumes {volume_range(v)}", f"below the lowest body {margin_range(v)}")
                      for k, v in results[label].items()}, flush=True)
    main_res = results["shipped (6 levels, attention)"]
    no_pp = {"chu": evaluate_cases(shipped, chu, postprocess=False),
             "phantoms": evaluate_cases(shipped, phantoms, postprocess=False)}
    sct = sct_sample(shipped, REPO / "Resources" / "SampleData" / "sct_t2_lumbar")
    seconds_2 = timing(shipped, chu[0][1], 2)
    seconds_1 = timing(shipped, chu[0][1], 1)
    torch.set_num_threads(args.threads)
    missing_ok = sum(1 for c in main_res["partial"]["per_case"].values() if set(c["missing"]) >= {"T11", "T12"}
                     and not ({"L1", "L2", "L3", "L4", "L5"} & set(c["missing"])))
    missing_low_ok = sum(1 for c in main_res["no_sacrum"]["per_case"].values() if set(c["missing"]) >= {"L4", "L5"}
                         and not ({"T11", "T12", "L1", "L2", "L3"} & set(c["missing"])))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({k: v for k, v in results.items()}, indent=1, default=str))

    tr = manifest["training"]
    cfg = tr["config"]
    ablation_lines = ["| model | trained | val Chu: mean Dice | ident. rate | all right | phantoms: mean Dice | ident. rate | all right |",
                      "|---|---|---|---|---|---|---|---|"]
    for label, (pair, info) in models.items():
        r = results[label]
        if label.startswith("shipped"):
            trained = f"{tr['epochs_run']} epochs x {cfg['samples_per_epoch']} slices, {tr['training_seconds'] / 60:.0f} min"
        else:
            trained = (f"{info['epochs']} epochs x {info['config'].samples_per_epoch} slices, "
                       f"{info['seconds'] / 60:.0f} min")
        ablation_lines.append(f"| {label} | {trained} | {r['chu']['mean_dice']:.3f} | {r['chu']['identification_rate']:.3f} | "
                              f"{r['chu']['all_levels_right']} | {r['phantoms']['mean_dice']:.3f} | "
                              f"{r['phantoms']['identification_rate']:.3f} | {r['phantoms']['all_levels_right']} |")
    same_epoch_lines = []
    reference = None                       # the from-scratch run behind the shipped model
    if not cfg.get("init_from"):
        reference = ("the shipped model's run", tr["val_dice_2d_grid_by_epoch"])
    elif args.reference_run and (Path(args.reference_run) / "checkpoint.pt").exists():
        ref_info = load_run_model(args.reference_run)[1]
        reference = (f"the from-scratch run the shipped model continued ({Path(args.reference_run).name})",
                     [h["val_dice"] for h in ref_info["history"]])
    for label, (pair, info) in models.items():
        if label.startswith("shipped") or reference is None:
            continue
        n = info["epochs"]
        if len(reference[1]) >= n:
            same_epoch_lines.append(f"{label}: {info['history'][-1]['val_dice']:.3f} after {n} epochs "
                                    f"(schedule of {info['config'].epochs}); {reference[0]} had "
                                    f"{reference[1][n - 1]:.3f} after its epoch {n}")
    body = f"""Machine: {machine()}. Script: `benchmarks/labeling.py` ({(time.time() - t_start) / 60:.0f} min). All numbers below are ours, measured here; none come from the paper.

{shipped_description(manifest)}
Evaluation is end to end (`label_vertebrae`: reorientation, resampling, prediction, post-processing, mapping back),
scored with `spinetumor.metrics` on the input grid.

CPU time to label one Chu volume (381 x 381 x 77 voxels): {seconds_2:.1f} s with 2 torch threads, {seconds_1:.1f} s with 1.

**Held-out Chu cases** ({len(chu)}): mean Dice {main_res['chu']['mean_dice']:.3f}, identification rate
{main_res['chu']['identification_rate']:.3f}, all seven levels right in {main_res['chu']['all_levels_right']} cases.
Caution to check the level names (less than `SACRUM_VIEW_MM` = {SACRUM_VIEW_MM:.0f} mm of image below the lowest
labeled body, so the sacrum is taken as out of view): {cautioned(main_res['chu'])} cases. Bodies found only in part
(a level under `PARTIAL_BODY_ML` = {PARTIAL_BODY_ML:g} ml, with a caution to check it): {found_in_part(main_res['chu'])} cases.
Level volumes found: {volume_range(main_res['chu'])}; image below the lowest labeled body: {margin_range(main_res['chu'])}.

{per_level_table(main_res['chu'])}

**Partial field of view** (the same cases cropped at the T12-L1 disc): mean Dice over L1..L5
{main_res['partial']['mean_dice']:.3f}, identification rate {main_res['partial']['identification_rate']:.3f}, all levels right
{main_res['partial']['all_levels_right']}; T11 and T12 reported missing (and no lumbar level missing) in {missing_ok}/{len(partial)} cases;
caution to check the names in {cautioned(main_res['partial'])}; a body found only in part in {found_in_part(main_res['partial'])}.

**Field of view ending above the sacrum** (the same cases cut at the L3-L4 disc: no L4, L5 or sacrum,
as in a thoracolumbar scan): mean Dice over T11..L3 {main_res['no_sacrum']['mean_dice']:.3f}, identification rate
{main_res['no_sacrum']['identification_rate']:.3f}, all levels right {main_res['no_sacrum']['all_levels_right']}; L4 and L5
reported missing (and no other level missing) in {missing_low_ok}/{len(no_sacrum)} cases; caution to check the
names in {cautioned(main_res['no_sacrum'])}; a body found only in part in {found_in_part(main_res['no_sacrum'])}.

**SCT thoracolumbar sample** (`Resources/SampleData/sct_t2_lumbar`, another scanner, 257 x 201 mm
field of view without the sacrum, no reference labels): {sct}. Adult lumbar bodies hold 15-45 ml, so
smaller volumes are bodies found only in part.

**Fresh phantoms** ({len(phantoms)}, seeds 7000..{7000 + len(phantoms) - 1}, tumor-free; {"; ".join(phantom_geom)}):
mean Dice {main_res['phantoms']['mean_dice']:.3f}, identification rate {main_res['phantoms']['identification_rate']:.3f},
all levels right {main_res['phantoms']['all_levels_right']}; caution to check the names in {cautioned(main_res['phantoms'])}; a body found only in part in {found_in_part(main_res['phantoms'])};
level volumes found {volume_range(main_res['phantoms'])}.

{per_level_table(main_res['phantoms'])}

**Post-processing** (shipped model; anatomy rules of `postprocess.py` on vs off). Its sacrum-top rule
(`postprocess.sacrum_top`: a lowest candidate under {SACRUM_TOP_FRACTION:g} of the body above it, with at least
{SACRUM_BELOW_MM:g} mm of image below it, is the top of S1, not L5, and the body on it is L5) dropped a candidate in {sacrum_tops(main_res['chu'])} held-out
cases, {sacrum_tops(main_res['partial'])} cut at T12-L1, {sacrum_tops(main_res['no_sacrum'])} cut at L3-L4 and {sacrum_tops(main_res['phantoms'])} phantoms; in the reference labels of
the {len(CHU_CASES)} Chu scans L5 holds {l5_to_l4_range(args.data)} times the volume of L4.

| | val Chu: mean Dice | ident. rate | all right | phantoms: mean Dice | ident. rate | all right |
|---|---|---|---|---|---|---|
| with post-processing | {main_res['chu']['mean_dice']:.3f} | {main_res['chu']['identification_rate']:.3f} | {main_res['chu']['all_levels_right']} | {main_res['phantoms']['mean_dice']:.3f} | {main_res['phantoms']['identification_rate']:.3f} | {main_res['phantoms']['all_levels_right']} |
| without | {no_pp['chu']['mean_dice']:.3f} | {no_pp['chu']['identification_rate']:.3f} | {no_pp['chu']['all_levels_right']} | {no_pp['phantoms']['mean_dice']:.3f} | {no_pp['phantoms']['identification_rate']:.3f} | {no_pp['phantoms']['all_levels_right']} |

Per-case results of the shipped model (mean Dice over the levels present / identification rate):
{"; ".join(f"{name} {c['mean_dice']:.3f} / {c['identification_rate']:.2f}" for name, c in list(main_res['chu']['per_case'].items()) + list(main_res['phantoms']['per_case'].items()))}.

"""
    write_section("Vertebra labeling", body, Path(args.docs))
    if args.ablation:
        ablation = f"""Machine: {machine()}. Script: `benchmarks/labeling.py --ablation ...`.

**Ablation** (depth 6 vs 4, attention gates vs plain skips). The variants were trained with the same
data, augmentation and seed but for far fewer epochs than the shipped model (see "trained"; they ran
at low priority beside it on the same two cores), with the ordinal loss term from their first
epoch and from random weights, while the shipped model continued from an earlier run (see above);
the comparison therefore favours the shipped model and says little about the architectures
themselves. The 2D validation Dice (cached 1.5 mm grid, every second slice, no post-processing)
at equal epoch counts, against the from-scratch run, is given below the table.

{chr(10).join(ablation_lines)}

{chr(10).join('- ' + line for line in same_epoch_lines) if same_epoch_lines else ''}
{('Not evaluated (no finished epoch): ' + ', '.join(skipped) + '.') if skipped else ''}
"""
        write_section("Vertebra labeling: depth and attention ablation", ablation, Path(args.docs))
    print(f"wrote {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
