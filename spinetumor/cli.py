"""The ``spinetumor`` command line.

Each subcommand is a small function that parses nothing itself: :func:`build_parser`
declares the options and the handler calls the engine. Errors a user can fix
(bad input, unknown device) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .progress import add_progress_option

EXIT_USAGE = 2


class UsageError(ValueError):
    """A user-fixable problem with the command line or its inputs."""


def _cmd_phantom(args) -> int:
    from .phantom import TUMOR_CHOICES, write_case

    if args.tumor not in TUMOR_CHOICES:
        raise UsageError(f"--tumor must be one of {', '.join(TUMOR_CHOICES)}")
    paths = write_case(Path(args.out), seed=args.seed, tumor=args.tumor)
    for path in paths:
        print(path)
    return 0


def _cmd_info(args) -> int:
    from .info import describe
    from .io import read_volume

    volume = read_volume(args.file)
    print(describe(volume, str(args.file)))
    return 0


def _cmd_run(args) -> int:
    from .pipeline import run_batch, run_study
    from .progress import ConsoleProgress

    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)     # the engine's own threads follow (device.cpu_threads)
    source = Path(args.input)
    batch = source.is_dir() and not _is_dicom_folder(source)
    with ConsoleProgress(args.progress, "analysis") as progress:
        if batch:
            summary = run_batch(source, Path(args.out), device=args.device, progress=progress)
            print(summary)
        else:
            analysis = run_study(source, Path(args.out), device=args.device, progress=progress)
            print(found_lines(analysis.report["tumors"]))
            print(Path(args.out) / "report.html")
    return 0


def found_lines(tumors: list[dict]) -> str:
    """What ``spinetumor run`` prints about one study: the tumor count, a line per tumor, and
    each of its cautions (``tumors[].cautions``) on a line of its own below it."""
    return f"{len(tumors)} tumor(s) found" + "".join(
        f"\n  tumor {t['id']}: {t['type']} at {' '.join(t['levels']) or 'no labeled level'}, {t['volume_ml']:.2f} mL"
        + "".join(f"\n    caution: {caution}" for caution in t.get("cautions", [])) for t in tumors)


def _is_dicom_folder(folder: Path) -> bool:
    """A folder that itself holds a DICOM series is one study, not a batch."""
    from .pipeline import holds_dicom

    return holds_dicom(folder)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="spinetumor",
        description="Find, classify and localize tumors in lumbar spine T2 MRI.",
    )
    parser.add_argument("--version", action="version", version=f"spinetumor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("phantom", help="write a synthetic sagittal T2 lumbar spine with exact ground truth",
                       description="Write image.nii.gz, vertebrae.nii.gz, anatomy.nii.gz, tumor.nii.gz "
                                   "and truth.json for one synthetic case.")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same case")
    p.add_argument("--tumor", default="random",
                   help="none, intramedullary, intradural-extramedullary, extradural, "
                        "several, or random (default)")
    p.set_defaults(handler=_cmd_phantom)

    p = sub.add_parser("run", help="the whole analysis: vertebrae, canal and cord, tumors, types, levels, report",
                       description="Analyze one study (image file or DICOM folder) into OUT, or every study of a "
                                   "folder into OUT/<study>/ with OUT/summary.csv. Writes the masks in the input's "
                                   "geometry, segmentation.seg.nrrd and report.json/.csv/.html (docs/report.md).")
    p.add_argument("input", help="image file, DICOM folder, or a folder of studies")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or mps")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: one per core); the results do not depend on it")
    add_progress_option(p)
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser("info", help="print an image's geometry, orientation and intensity range")
    p.add_argument("file", help="image file (NIfTI, NRRD, MHA) or DICOM folder")
    p.set_defaults(handler=_cmd_info)

    from .labeling.commands import add_commands as add_labeling_commands

    add_labeling_commands(sub)  # label, evaluate labels, train labeling

    from .segmentation.commands import add_commands as add_segmentation_commands

    add_segmentation_commands(sub)  # segment, train segmentation

    from .augmentation.commands import add_commands as add_augmentation_commands

    add_augmentation_commands(sub)  # augment

    from .classification.commands import add_commands as add_classification_commands

    add_classification_commands(sub)  # classify, train classification
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit code."""
    from .device import DeviceError
    from .io import InputError
    from .labeling.model import ModelError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except (InputError, UsageError, DeviceError, ModelError) as error:
        print(f"spinetumor {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"spinetumor {args.command}: cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
