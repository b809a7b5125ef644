"""Turn a training run into the shipped model: safetensors weights + manifest with validation metrics.

    python -m spinetumor.classification.ship --run runs/classification/c4 --command "spinetumor train ..."

Exports ``run/best.pt`` (lowest validation NLL) with the temperature fitted at the end
of training, and records the run's validation metrics (before and after calibration,
confusion matrix included) from ``run/summary.json``. The exported file is then loaded
back (sha256 checked) and re-scored on the validation tumors, which must reproduce the
summary's calibrated perturbed-mask NLL.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from .dataset import TRAIN_SEED0, VAL_SEED0
from .model import DEFAULT_WEIGHTS, export_model, load_model


def ship(run_dir, out=DEFAULT_WEIGHTS, command: str = "", variants: dict | None = None, cache_dir=None) -> dict:
    """Export ``run_dir/best.pt`` to ``out`` with a manifest; ``variants`` adds the channel comparison."""
    import torch

    from .train import TrainConfig, calibration_cache, evaluate
    from .dataset import load_cache

    run_dir = Path(run_dir)
    best = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    config = TrainConfig.from_dict(json.loads(best["config"]))
    summary = json.loads((run_dir / "summary.json").read_text())
    history = summary["history"]
    extra = {
        "date": datetime.date.today().isoformat(),
        "command": command,
        "training": {
            "data": f"{config.train_phantoms} spinetumor.phantom cases, seeds "
                    f"{TRAIN_SEED0}..{TRAIN_SEED0 + config.train_phantoms - 1} "
                    "(seed % 3 picks intramedullary / intradural-extramedullary / extradural), ground-truth masks "
                    "perturbed during training (dilated, eroded, shifted, cut) as from an imperfect segmentation"
                    + (f", plus {config.extra_cases} extra cases" if config.extra_cases else ""),
            "validation_data": f"{config.val_phantoms} phantoms, seeds "
                               f"{VAL_SEED0}..{VAL_SEED0 + config.val_phantoms - 1}",
            "config": config.to_dict(),
            "best_epoch": int(best["epoch"]) + 1,
            "epochs_run": len(history),
            "training_seconds": round(sum(h["seconds"] for h in history), 1),
        },
        "validation": {
            "what": "per-tumor type (area-weighted slice combination) on the validation phantoms; "
                    "(un)calibrated: the set the temperature was fitted on (tumor masks perturbed as an imperfect "
                    "segmentation, fixed seeds; sac/cord as temperature_fitted_on says); "
                    "perturbed_truth_anatomy_*: perturbed tumor masks, phantom sac/cord; clean_masks_*: all "
                    "masks from the phantom",
            "temperature_fitted_on": summary.get("temperature_fitted_on", ""),
            **{key.replace("validation_", "", 1): value for key, value in summary.items()
               if key.startswith("validation_")},
        },
    }
    if variants:
        extra["channel_variants"] = variants
    manifest = export_model(best["model"], config.net, summary["temperature"], out, extra)
    model = load_model(out)
    calib_path = calibration_cache(cache_dir or run_dir / "cache", config)
    check = evaluate(model.net, load_cache(calib_path), model.channels, model.device, model.temperature, perturbed=True)
    if abs(check["nll"] - summary["validation_calibrated"]["nll"]) > 1e-4:
        raise RuntimeError("the exported model does not reproduce the run's validation accuracy")
    return manifest


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(prog="python -m spinetumor.classification.ship")
    p.add_argument("--run", required=True, help="training run folder (best.pt, summary.json, cache/)")
    p.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--command", default="", help="the training command to record in the manifest")
    p.add_argument("--compare", nargs="*", default=[], help="other run folders whose validation metrics to record")
    p.add_argument("--cache-dir", default=None, help="folder of the phantom caches (default RUN/cache)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    variants = {}
    for run in [args.run] + list(args.compare):
        s = json.loads((Path(run) / "summary.json").read_text())
        variants[f"{s['config']['net']['in_channels']} channels"] = {
            "run": Path(run).name, "calibrated": s["validation_calibrated"], "temperature": s["temperature"]}
    manifest = ship(args.run, args.out, args.command, variants if args.compare else None, args.cache_dir)
    print(json.dumps(manifest["validation"]["calibrated"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
