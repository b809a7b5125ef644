"""Command-line handlers of the labeling capability: ``label``, ``evaluate labels``, ``train labeling``.

:func:`add_commands` registers them on the ``spinetumor`` parser (called from
:func:`spinetumor.cli.build_parser`). ``evaluate`` and ``train`` are groups that other
capabilities may share: an existing group parser is reused, not redefined.
"""

from __future__ import annotations

from pathlib import Path

from ..progress import ConsoleProgress, add_progress_option


def _group(sub, name: str, help_text: str):
    """The nested subparsers of group ``name`` (created when absent, reused when present)."""
    parser = sub.choices.get(name)
    if parser is None:
        parser = sub.add_parser(name, help=help_text)
    for action in parser._actions:  # argparse keeps the nested subparsers as one action
        if action.__class__.__name__ == "_SubParsersAction":
            return action
    nested = parser.add_subparsers(dest=f"{name}_what", metavar="WHAT")
    nested.required = True
    return nested


def add_commands(sub) -> None:
    """Add ``label``, ``evaluate labels`` and ``train labeling`` to the top-level subparsers."""
    p = sub.add_parser("label", help="label the vertebral bodies T11..L5 of a T2 spine MRI",
                       description="Write DIR/vertebrae.nii.gz (input geometry), DIR/vertebrae.seg.nrrd "
                                   "and DIR/vertebrae.json (per level: present, volume, centroid, confidence; "
                                   "the image below the lowest body and, when the sacrum is out of view, a "
                                   "note that the names may be one level off; the levels found only in part, "
                                   "under 5 ml, with a note to check them).")
    p.add_argument("input", help="image file (NIfTI, NRRD, MHA) or DICOM folder")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or mps")
    p.add_argument("--model", default=None, help="weights file (default: the shipped model)")
    add_progress_option(p)
    p.set_defaults(handler=cmd_label)

    evaluate = _group(sub, "evaluate", "compare a result with ground truth")
    p = evaluate.add_parser("labels", help="Dice, surface distance and identification per vertebral level")
    p.add_argument("pred", help="predicted vertebrae label map")
    p.add_argument("truth", help="ground-truth vertebrae label map (1..7 = T11..L5)")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.set_defaults(handler=cmd_evaluate_labels)

    train = _group(sub, "train", "train a model")
    p = train.add_parser("labeling", help="train the vertebra-labeling U-Net (resumable)")
    from .train import add_arguments

    add_arguments(p)
    p.set_defaults(handler=cmd_train_labeling)


def cmd_label(args) -> int:
    """``spinetumor label INPUT --out DIR``."""
    from ..cli import UsageError
    from ..device import select_device
    from ..io import read_volume, write_json, write_segmentation, write_volume
    from .infer import label_vertebrae
    from .model import ModelError, load_model

    volume = read_volume(args.input)
    device = select_device(args.device)
    try:
        model = load_model(args.model, device=device)
    except ModelError as error:
        raise UsageError(str(error)) from None
    with ConsoleProgress(args.progress, "labeling") as progress:
        result = label_vertebrae(volume, device=device, progress=progress, model=model)
    out = Path(args.out)
    write_volume(result.labels, out / "vertebrae.nii.gz")
    write_segmentation(result.labels, out / "vertebrae.seg.nrrd")
    write_json({"input": str(args.input), **result.to_dict()}, out / "vertebrae.json")
    found = [name for name, lv in result.levels.items() if lv.present]
    print(f"levels found: {', '.join(found) or 'none'}" + (f"; missing: {', '.join(result.missing)}" if result.missing else ""))
    for caution in result.cautions():
        print("note: " + caution)
    for name in ("vertebrae.nii.gz", "vertebrae.seg.nrrd", "vertebrae.json"):
        print(out / name)
    return 0


def evaluate_labels(pred, truth) -> dict:
    """Per-level metrics (Dice, HD95, ASSD, identification) and summary of two vertebra label maps.

    A prediction on another grid is resampled (nearest neighbour) onto the truth's first.
    """
    import numpy as np

    from ..labels import VERTEBRAE
    from ..metrics import label_metrics, summarize
    from ..volume import resample_like

    if not pred.same_geometry(truth):
        pred = resample_like(pred, truth, label=True)
    values = [lab.value for lab in VERTEBRAE]
    per_label = label_metrics(pred, truth, values)
    summary = summarize(per_label)
    truth_levels = [v for v in values if np.any(np.asarray(truth.array) == v)]
    pred_levels = [v for v in values if np.any(np.asarray(pred.array) == v)]
    all_right = bool(truth_levels) and all(per_label[v].get("identified") for v in truth_levels) \
        and set(pred_levels) <= set(truth_levels)
    return {"per_level": per_label, "summary": summary, "all_levels_right": all_right,
            "truth_levels": truth_levels, "pred_levels": pred_levels}


def cmd_evaluate_labels(args) -> int:
    """``spinetumor evaluate labels PRED GT``."""
    import math

    from ..io import read_volume, write_json
    from ..labels import by_value

    pred = read_volume(args.pred, validate=False)
    truth = read_volume(args.truth, validate=False)
    result = evaluate_labels(pred, truth)
    print(f"{'level':6} {'dice':>6} {'hd95_mm':>8} {'assd_mm':>8} {'centroid_mm':>11}  identified")
    for value, m in result["per_level"].items():
        if m.get("empty") == "both":
            continue
        fmt = lambda x: "   -" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.2f}"  # noqa: E731
        print(f"{by_value(value).key:6} {m['dice']:6.3f} {fmt(m['hd95_mm']):>8} {fmt(m['assd_mm']):>8} "
              f"{fmt(m.get('centroid_distance_mm')):>11}  {'yes' if m.get('identified') else 'no'}")
    s = result["summary"]
    print(f"mean Dice {s['dice']:.3f}; identification rate {s['identification_rate']:.3f}; "
          f"all levels right: {'yes' if result['all_levels_right'] else 'no'}")
    if args.json:
        write_json(_jsonable(result), args.json)
    return 0


def _jsonable(data):
    """Replace non-finite floats with strings and numpy scalars with Python ones, for JSON."""
    import math

    import numpy as np

    if isinstance(data, dict):
        return {str(k): _jsonable(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_jsonable(v) for v in data]
    if isinstance(data, (np.floating, float)):
        x = float(data)
        return x if math.isfinite(x) else str(x)
    if isinstance(data, np.integer):
        return int(data)
    if isinstance(data, np.bool_):
        return bool(data)
    return data


def cmd_train_labeling(args) -> int:
    """``spinetumor train labeling --out DIR``."""
    import torch

    from .train import run_from_args

    torch.set_num_threads(args.threads)
    result = run_from_args(args)
    history = result["history"]
    if history:
        last = history[-1]
        print(f"trained {len(history)} epochs; last validation Dice {last['val_dice']:.4f}; "
              f"checkpoint {Path(args.out) / 'checkpoint.pt'}")
    return 0
