"""Command-line handlers of the tumor segmentation: ``segment``, ``train segmentation`` and ``train tumor-net``.

:func:`add_commands` registers them on the ``spinetumor`` parser (called from
:func:`spinetumor.cli.build_parser`); the ``train`` group is shared with the labeling
capability through :func:`spinetumor.labeling.commands._group`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..labeling.commands import _group
from ..progress import ConsoleProgress, add_progress_option

log = logging.getLogger(__name__)

OUTPUT_FILES = ("tumor.nii.gz", "tumor_probability.nii.gz", "canal.nii.gz", "cord.nii.gz")


def add_commands(sub) -> None:
    """Add ``segment`` and ``train segmentation`` to the top-level subparsers."""
    p = sub.add_parser("segment", help="segment spinal tumors (fuzzy c-means + random forest) in a T2 spine MRI",
                       description="Write DIR/tumor.nii.gz (binary), DIR/tumor_probability.nii.gz, "
                                   "DIR/canal.nii.gz and DIR/cord.nii.gz, all in the input's geometry.")
    p.add_argument("input", help="image file (NIfTI, NRRD, MHA) or DICOM folder")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--vertebrae", default=None,
                   help="vertebral-body label map on the input's grid (default: run the vertebra labeling "
                        "when its model is installed, otherwise go without)")
    p.add_argument("--model", default=None, help="tumor model .skops file (default: the shipped model)")
    p.add_argument("--threshold", type=float, default=None, help="forest probability at which a region is a tumor (default: the model's)")
    p.add_argument("--clusters", type=int, default=None,
                   help="fuzzy c-means clusters (must equal the model's, which its manifest records)")
    p.add_argument("--denoiser", default=None, choices=("shearlet", "bilateral", "gaussian", "curvature", "none"),
                   help="denoising before the features (default: the model's)")
    p.add_argument("--device", default=None, help="device of the vertebra labeling and the tumor network: auto (default), cpu, cuda, mps")
    add_progress_option(p)
    p.set_defaults(handler=cmd_segment)

    train = _group(sub, "train", "train a model")
    p = train.add_parser("segmentation", help="train the tumor random forest on phantoms")
    from .train import add_arguments

    add_arguments(p)
    add_progress_option(p)
    p.set_defaults(handler=cmd_train_segmentation)

    p = train.add_parser("tumor-net", help="train the tumor probability network (a forest feature; resumable)")
    from .net_train import add_arguments as add_net_arguments

    add_net_arguments(p)
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    p.set_defaults(handler=cmd_train_tumor_net)


def _vertebrae_for(volume, path, progress, device=None):
    """The vertebra label map: read from ``path``, else from the labeling model when shipped, else None."""
    from ..cli import UsageError
    from ..io import read_volume

    if path:
        vertebrae = read_volume(path, validate=False)
        if not vertebrae.same_geometry(volume):
            raise UsageError(f"{path}: the vertebrae label map is not on the input's grid "
                             "(shape, spacing, origin and direction must match)")
        return vertebrae
    from ..labeling.model import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.exists():
        log.warning("no vertebra labeling model installed (%s); segmenting without vertebrae", DEFAULT_WEIGHTS.name)
        return None
    from ..labeling.infer import label_vertebrae

    return label_vertebrae(volume, device=device, progress=progress).labels


def cmd_segment(args) -> int:
    """``spinetumor segment INPUT --out DIR``."""
    from ..cli import UsageError
    from ..device import select_device
    from ..io import InputError, read_volume, write_json, write_volume
    from ..progress import sub_progress
    from .tumor import TumorModelError, load_tumor_model, segment_tumor

    logging.basicConfig(level=logging.INFO, format="spinetumor segment: %(message)s")
    volume = read_volume(args.input)
    try:
        model = load_tumor_model(args.model, select_device(args.device))
    except TumorModelError as error:
        raise UsageError(str(error)) from None
    with ConsoleProgress(args.progress, "segmentation") as progress:
        vertebrae = _vertebrae_for(volume, args.vertebrae, sub_progress(progress, 0.0, 0.3), args.device)
        try:
            result = segment_tumor(volume, vertebrae=vertebrae, threshold=args.threshold, model=model,
                                   clusters=args.clusters, denoiser=args.denoiser,
                                   progress=sub_progress(progress, 0.3, 1.0))
        except ValueError as error:
            raise InputError(f"{args.input}: {error}") from None
    out = Path(args.out)
    for volume_out, name in zip((result.mask, result.probability, result.canal, result.cord), OUTPUT_FILES):
        write_volume(volume_out, out / name)
    voxel_ml = float(result.mask.spacing[0] * result.mask.spacing[1] * result.mask.spacing[2]) / 1000.0
    found = int(result.mask.array.sum())
    write_json({"input": str(args.input), "tumor_volume_ml": round(found * voxel_ml, 4),
                "vertebrae": "given" if args.vertebrae else ("labeled" if vertebrae is not None else "none"),
                **result.info}, out / "tumor.json")
    print(f"tumor volume: {found * voxel_ml:.2f} ml" if found else "no tumor found")
    for name in OUTPUT_FILES + ("tumor.json",):
        print(out / name)
    return 0


def cmd_train_tumor_net(args) -> int:
    """``spinetumor train tumor-net --out DIR``."""
    import torch

    from ..cli import UsageError
    from .net_train import run_from_args

    if args.resume and not (Path(args.out) / "checkpoint.pt").exists():
        raise UsageError(f"{Path(args.out) / 'checkpoint.pt'}: no checkpoint to resume from")
    torch.set_num_threads(args.threads)
    manifest = run_from_args(args)
    v = manifest["validation"]
    print(f"validation Dice {v['mean_dice_at_0.5']:.3f} at epoch {v['epoch'] + 1}, tumor-free phantoms clean "
          f"{v['tumor_free_clean']}")
    print(Path(args.out) / "tumor_net.safetensors")
    return 0


def cmd_train_segmentation(args) -> int:
    """``spinetumor train segmentation --out DIR``."""
    from .train import run_from_args

    with ConsoleProgress(args.progress, "training") as progress:
        manifest = run_from_args(args, progress=progress)
    v = manifest["validation"]
    print(f"validation Dice {v['validation_dice']:.3f}, tumor-free clean rate {v['validation_clean_rate']:.2f}, "
          f"threshold {v['threshold']}, min volume {v['min_volume_mm3']} mm3")
    print(Path(args.out) / "tumor_rf.skops")
    return 0
