"""Turn a training run into the shipped model: safetensors weights + manifest with validation metrics.

    python -m spinetumor.labeling.ship --run runs/labeling/main [--out spinetumor/models/vertebra_labeling.safetensors]

The best checkpoint of the run (by validation Dice during training) is exported; the
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
            "seconds": round(seconds, 2),
        }
    return {"per_case": per_case,
            "mean_dice": float(np.mean([c["mean_dice"] for c in per_case.values()])),
            "identification_rate": float(np.mean([c["identification_rate"] for c in per_case.values()])),
            "all_levels_right": f"{sum(c['all_levels_right'] for c in per_case.values())}/{len(per_case)}"}


def ship(run_dir, out=DEFAULT_WEIGHTS, command: str = "", chu_dir=None) -> dict:
    """Export ``run_dir/best.pt`` to ``out`` with a manifest holding the validation metrics."""
    import torch

    from .dataset import load_chu_case
    from .train import TrainConfig

    run_dir = Path(run_dir)
    best = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    config = TrainConfig.from_dict(json.loads(best["config"]))
    ckpt = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
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
            "best_epoch": int(best["epoch"]) + 1,
            "epochs_run": len(history),
            "training_seconds": round(sum(h["seconds"] for h in history), 1),
            "val_dice_2d_grid_by_epoch": [round(h["val_dice"], 4) for h in history],
        },
    }
    manifest = export_model(best["model"], config.net, out, extra)
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
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    manifest = ship(args.run, args.out, args.command)
    print(json.dumps(manifest["validation"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
