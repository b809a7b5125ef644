"""``spinetumor augment``: insert tumors along the CSF of tumor-free scans and write a dataset.

:func:`add_commands` registers the command on the ``spinetumor`` parser (called from
:func:`spinetumor.cli.build_parser`).
"""

from __future__ import annotations

from ..progress import ConsoleProgress, add_progress_option

DESCRIPTION = """\
Insert a tumor into tumor-free target scans at positions along their CSF from T11 to L5
(the source paper's augmentation): the tumor is cut from a source scan (the hole filled from
its surroundings), turned to the local direction of the CSF, kept in its compartment
(intramedullary in the cord, intradural-extramedullary in the sac outside the cord,
extradural outside the dura), sized per sagittal slice and blended in. Every sample is
checked for its compartment; failures are dropped and counted.

Writes OUT/samples/<id>_{image,tumor,vertebrae}.nii.gz, OUT/manifest.csv (tumor type, level,
position along the path in mm, slice, rotation, source, target, seed per sample) and
OUT/dataset.json (counts). Deterministic for a seed; rerunning resumes an interrupted run.

Targets: image files with vertebra labels beside them (NAME_t2.nii.gz + NAME_vertebrae.nii.gz,
or a `spinetumor phantom` folder with image.nii.gz + vertebrae.nii.gz [+ anatomy.nii.gz]),
or folders of them. Without an anatomy map the canal and cord are segmented automatically.
"""


def add_commands(sub) -> None:
    """Add ``augment`` to the top-level subparsers."""
    import argparse

    from ..labels import TUMOR_TYPE_NAMES

    p = sub.add_parser("augment", help="insert tumors along the CSF of tumor-free scans (dataset augmentation)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("source tumor (a scan with a tumor mask, or phantoms)")
    src.add_argument("--source-image", help="source image containing the tumor")
    src.add_argument("--source-tumor", help="tumor mask on the source image's grid (nonzero = tumor)")
    src.add_argument("--source-type", choices=TUMOR_TYPE_NAMES,
                     help="tumor compartment; required with --source-image; with --phantom-source "
                          "the phantom's tumor type (default: one phantom of each type)")
    src.add_argument("--source-canal", help="optional canal (dural sac) mask of the source; default: segmented")
    src.add_argument("--source-cord", help="optional cord mask of the source (with --source-canal)")
    src.add_argument("--phantom-source", type=int, nargs="+", metavar="SEED",
                     help="take the tumor from synthetic phantom(s) drawn with these seeds instead")
    p.add_argument("--targets", nargs="+", required=True, metavar="PATH", help="target image files or folders")
    p.add_argument("--out", required=True, help="output dataset folder (created if missing)")
    p.add_argument("--per-slice", type=int, default=20,
                   help="positions along the CSF per source tumor and target (each gives one image per "
                        "sagittal slice the tumor crosses in 2d mode); default 20")
    p.add_argument("--mode", choices=("2d", "3d"), default="2d",
                   help="2d: per sagittal slice, sized per slice (the paper's); 3d: one coherent object per volume")
    p.add_argument("--rotations", type=int, default=0, metavar="N",
                   help="rotated copies per sample, 1-10 degrees alternating left and right (default 0)")
    p.add_argument("--fill", choices=("bicubic", "biharmonic"), default=None,
                   help="how the source's hole is filled (default: the better one measured, see docs/benchmarks.md)")
    p.add_argument("--seed", type=int, default=0, help="random seed (positions' phase, rotation angles)")
    add_progress_option(p)
    p.set_defaults(handler=cmd_augment)


def _patches(args) -> list:
    """The source tumor patches the arguments ask for (UsageError for inconsistent options)."""
    from ..cli import UsageError
    from ..labels import TUMOR_TYPE_NAMES
    from .dataset import source_from_files, source_from_phantom
    from .inpaint import DEFAULT_FILL

    fill = args.fill or DEFAULT_FILL
    if args.phantom_source and args.source_image:
        raise UsageError("give either --source-image or --phantom-source, not both")
    if args.phantom_source:
        types = [args.source_type] if args.source_type else list(TUMOR_TYPE_NAMES)
        return [source_from_phantom(seed, kind, fill) for seed in args.phantom_source for kind in types]
    if not args.source_image:
        raise UsageError("a source is needed: --source-image with --source-tumor and --source-type, "
                         "or --phantom-source SEED")
    if not args.source_tumor or not args.source_type:
        raise UsageError("--source-image needs --source-tumor and --source-type")
    if args.source_cord and not args.source_canal:
        raise UsageError("--source-cord needs --source-canal")
    return [source_from_files(args.source_image, args.source_tumor, args.source_type, args.source_canal,
                              args.source_cord, fill)]


def cmd_augment(args) -> int:
    """``spinetumor augment ...``."""
    from ..cli import UsageError
    from .dataset import augment_dataset, find_targets

    if args.per_slice < 1:
        raise UsageError("--per-slice must be at least 1")
    if args.rotations < 0:
        raise UsageError("--rotations must be 0 or more")
    targets = find_targets(args.targets)
    patches = _patches(args)
    with ConsoleProgress(args.progress, "augment") as progress:
        summary = augment_dataset(patches, targets, args.out, per_slice=args.per_slice, mode=args.mode,
                                  rotations=args.rotations, seed=args.seed, progress=progress)
    print(f"samples: {summary['samples']} ({summary['written']} written, {summary['skipped_existing']} already "
          f"there); dropped: {summary['dropped_compartment']} compartment, {summary['dropped_clipped']} clipped")
    print(f"{args.out}/manifest.csv")
    return 0
