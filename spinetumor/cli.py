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

    p = sub.add_parser("info", help="print an image's geometry, orientation and intensity range")
    p.add_argument("file", help="image file (NIfTI, NRRD, MHA) or DICOM folder")
    p.set_defaults(handler=_cmd_info)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit code."""
    from .device import DeviceError
    from .io import InputError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except (InputError, UsageError, DeviceError) as error:
        print(f"spinetumor {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"spinetumor {args.command}: cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
