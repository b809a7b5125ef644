"""Command-line handlers of tumor-type classification: ``classify`` and ``train classification``.

:func:`add_commands` registers them on the ``spinetumor`` parser (called from
:func:`spinetumor.cli.build_parser`); the ``train`` group is shared with the other
capabilities through :func:`spinetumor.labeling.commands._group`.
"""

from __future__ import annotations

from pathlib import Path

from ..labeling.commands import _group


def add_commands(sub) -> None:
    """Add ``classify`` and ``train classification`` to the top-level subparsers."""
    p = sub.add_parser("classify", help="classify each tumor of a mask as intramedullary, "
                                        "intradural-extramedullary or extradural",
                       description="Print, per tumor (connected component, or id of an instance map), "
                                   "the type and its calibrated probabilities.")
    p.add_argument("input", help="image file (NIfTI, NRRD, MHA) or DICOM folder")
    p.add_argument("--tumor", required=True, help="tumor mask (binary or instance ids)")
    p.add_argument("--canal", default=None, help="dural sac mask (optional, improves the answer)")
    p.add_argument("--cord", default=None, help="spinal cord mask (optional)")
    p.add_argument("--model", default=None, help="weights file (default: the shipped model)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or mps")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.set_defaults(handler=cmd_classify)

    train = _group(sub, "train", "train a model")
    p = train.add_parser("classification", help="train the tumor-type CNN on phantoms (resumable)")
    from .train import add_arguments

    add_arguments(p)
    p.set_defaults(handler=cmd_train_classification)


def cmd_classify(args) -> int:
    """``spinetumor classify IMAGE --tumor MASK [--canal MASK --cord MASK]``."""
    from ..cli import UsageError
    from ..device import select_device
    from ..io import read_volume, write_json
    from ..localization import tumor_instances
    from .infer import classify_tumor
    from .model import ModelError, load_model

    image = read_volume(args.input)
    tumor = read_volume(args.tumor, validate=False)
    canal = read_volume(args.canal, validate=False) if args.canal else None
    cord = read_volume(args.cord, validate=False) if args.cord else None
    try:
        model = load_model(args.model, device=select_device(args.device))
    except ModelError as error:
        raise UsageError(str(error)) from None
    inst = tumor_instances(tumor)
    ids = [int(v) for v in sorted(set(inst[inst > 0].tolist()))]
    if not ids:
        raise UsageError(f"{args.tumor}: the tumor mask is empty")
    results = []
    for tid in ids:
        kind, probs = classify_tumor(image, tumor.with_array((inst == tid).astype("uint8")), canal, cord, model)
        results.append({"id": tid, "type": kind, "probabilities": probs})
        print(f"tumor {tid}: {kind} (" + ", ".join(f"{k} {v:.3f}" for k, v in probs.items()) + ")")
    if args.json:
        write_json({"input": str(args.input), "tumors": results}, args.json)
    return 0


def cmd_train_classification(args) -> int:
    """``spinetumor train classification --out DIR``."""
    import torch

    from ..cli import UsageError
    from .train import config_from_args, run_from_args

    try:
        config_from_args(args)                     # the options are checked before any work
    except ValueError as error:
        raise UsageError(str(error)) from None
    if (args.resume or args.calibrate_only) and not (Path(args.out) / "checkpoint.pt").exists():
        raise UsageError(f"{Path(args.out) / 'checkpoint.pt'}: no checkpoint to resume from")
    torch.set_num_threads(args.threads)
    result = run_from_args(args)
    cal = result["validation_calibrated"]
    print(f"validation accuracy {cal['accuracy']:.3f} (perturbed masks, temperature {result['temperature']:.3f}); "
          f"summary {Path(args.out) / 'summary.json'}")
    return 0
