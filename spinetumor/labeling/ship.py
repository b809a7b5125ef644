"""Turn a training run into the shipped model: safetensors weights + manifest with validation metrics.

    python -m spinetumor.labeling.ship --run runs/labeling/main [--out spinetumor/models/vertebra_labeling.safetensors]
        [--last] [--namer NAMER.safetensors]

The best checkpoint of the run (by validation Dice during training) is exported, or with
``--last`` the last epoch's weights (their average when the run kept one). With ``--namer`` the
run's network becomes the finder of a found-and-named pair whose level names come from the
namer's weights (:func:`~spinetumor.labeling.model.found_and_named`); both go into one file. The
validation cases are then labeled end to end (:func:`~spinetumor.labeling.infer.label_vertebrae`,
post-processing included) and scored with :func:`~spinetumor.labeling.commands.evaluate_labels`;
those numbers go into the manifest.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np

from .model import DEFAULT_WEIGHTS, export_model, load_model


def evaluate_cases(model_pair, cases, device="cpu", postprocess: bool = True) -> dict:
    """Label each ``(name, image, truth)`` and score it; per-case metrics plus means."""
    from .commands import evaluate_labels
    from .infer import label_vertebrae

    per_case = {}
    for name, image, truth in cases:
        t0 = time.time()
        result = label_vertebrae(image, device=device, model=model_pair, postprocess=postprocess)
        seconds = time.time() - t0
        ev = evaluate_labels(result.labels, truth)
        per_level = {int(k): v for k, v in ev["per_level"].items()}
        per_case[name] = {
            "dice": {k: float(v["dice"]) for k, v in per_level.items() if v.get("empty") != "both"},
            "hd95_mm": {k: float(v["hd95_mm"]) for k, v in per_level.items() if v.get("empty") != "both"},
            "assd_mm": {k: float(v["assd_mm"]) for k, v in per_level.items() if v.get("empty") != "both"},
            "identification_rate": float(ev["summary"]["identification_rate"]),
            "all_levels_right": bool(ev["all_levels_right"]),
            "mean_dice": float(ev["summary"]["dice"]),
            "missing": list(result.missing),
            "sacrum_in_view": result.sacrum_in_view(),
            "partial_levels": result.partial_levels(),
            "volumes_ml": {lv.name: round(float(lv.volume_ml), 1) for lv in result.levels.values() if lv.present},
            "inferior_margin_mm": result.inferior_margin_mm,
            "sacrum_top_dropped": bool(result.postprocess.get("sacrum_top_voxels")),
            "seconds": round(seconds, 2),
        }
    return {"per_case": per_case,
            "mean_dice": float(np.mean([c["mean_dice"] for c in per_case.values()])),
            "identification_rate": float(np.mean([c["identification_rate"] for c in per_case.values()])),
            "all_levels_right": f"{sum(c['all_levels_right'] for c in per_case.values())}/{len(per_case)}"}


def run_weights(run_dir: Path, last: bool):
    """(state dict, epoch) of a run: ``best.pt``, or with ``last`` the last epoch of
    ``checkpoint.pt`` (its weight average when the run kept one)."""
    import torch

    chosen = torch.load(run_dir / ("checkpoint.pt" if last else "best.pt"), map_location="cpu", weights_only=True)
    return chosen.get("average") or chosen["model"], int(chosen["epoch"]) + 1


def with_namer(finder_state: dict, net_config: dict, namer_weights) -> tuple:
    """(state dict of the found-and-named pair, the namer's provenance for the manifest).

    The namer must be one network of the finder's architecture ``net_config``."""
    from safetensors.torch import load_file

    from .model import ModelError, verified_manifest

    namer_manifest = verified_manifest(namer_weights, "namer")
    if namer_manifest.get("composition", "single") != "single":
        raise ModelError(f"{namer_weights}: the namer must be one network")
    if dict(namer_manifest["architecture"]) != dict(net_config):
        raise ModelError(f"{namer_weights}: the namer's architecture {namer_manifest['architecture']} differs from "
                         f"the finder's {dict(net_config)}")
    state = {**{f"finder.{k}": v for k, v in finder_state.items()},
             **{f"namer.{k}": v for k, v in load_file(str(namer_weights)).items()}}
    provenance = {key: namer_manifest[key] for key in ("sha256", "date", "command", "training", "validation")
                  if key in namer_manifest}
    return state, provenance


def ship(run_dir, out=DEFAULT_WEIGHTS, command: str = "", chu_dir=None, last: bool = False, namer=None) -> dict:
    """Export a run's weights (``best.pt``, or the last epoch) to ``out`` with a manifest holding
    the validation metrics; with ``namer`` (safetensors of one network) as a found-and-named pair."""
    import torch

    from .dataset import load_chu_case
    from .model import FOUND_AND_NAMED
    from .train import TrainConfig

    run_dir = Path(run_dir)
    state, epoch = run_weights(run_dir, last)
    ckpt = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    config = TrainConfig.from_dict(json.loads(ckpt["config"]))
    history = json.loads(ckpt["history"])
    chu_dir = Path(chu_dir) if chu_dir else Path(__file__).resolve().parents[3] / "shared" / "data" / "chu_lumbar_t2"
    extra = {
        "date": datetime.date.today().isoformat(),
        "command": command,
        "training": {
            "data": {"chu_lumbar_t2": "Chu et al. 2015 (PLoS One), Zenodo 22304: 12 healthy lumbar T2 scans, "
                                      "vertebral bodies T11..L5",
                     "phantoms": f"{config.phantoms} tumor-free spinetumor.phantom cases (seeds 1000..{999 + config.phantoms})"
                     if config.phantoms else "none"},
            "split": {"train": list(config.train_cases), "validation": list(config.val_cases)},
            "config": config.to_dict(),
            "epoch_shipped": epoch,
            "weights_shipped": "last epoch" + (" (weight average)" if config.average else "") if last
                               else "best validation epoch",
            "epochs_run": len(history),
            "training_seconds": round(sum(h["seconds"] for h in history), 1),
            "val_dice_2d_grid_by_epoch": [round(h["val_dice"], 4) for h in history],
        },
    }
    composition = "single"
    if namer:
        state, extra["namer"] = with_namer(state, config.net, namer)
        composition = FOUND_AND_NAMED
        extra["training"]["role"] = ("finder: with the namer, where the vertebral bodies are (a body where either "
                                     "finds one); the namer names their levels")
    manifest = export_model(state, config.net, out, extra, composition)
    pair = load_model(out)
    cases = [(name, *load_chu_case(chu_dir, name)) for name in config.val_cases]
    metrics = evaluate_cases(pair, cases)
    manifest["validation"] = {
        "cases": list(config.val_cases),
        "what": "end-to-end label_vertebrae (post-processing included) on the held-out Chu cases",
        "mean_dice": round(metrics["mean_dice"], 4),
        "identification_rate": round(metrics["identification_rate"], 4),
        "all_levels_right": metrics["all_levels_right"],
        "per_case_mean_dice": {k: round(v["mean_dice"], 4) for k, v in metrics["per_case"].items()},
    }
    Path(out).with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(prog="python -m spinetumor.labeling.ship")
    p.add_argument("--run", required=True)
    p.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--command", default="", help="the training command to record in the manifest")
    p.add_argument("--last", action="store_true", help="ship the last epoch's weights instead of best.pt")
    p.add_argument("--namer", default=None,
                   help="safetensors of a network that names the levels; the run's network then only finds the bodies")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    manifest = ship(args.run, args.out, args.command, last=args.last, namer=args.namer)
    print(json.dumps(manifest["validation"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
