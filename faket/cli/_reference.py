"""Real-reference options of ``faket noise`` and ``faket style`` (shared by both CLIs).

:func:`add_reference_args` adds the sampling and hazard options (read back with
:meth:`faket.imaging.reference.ReferenceOptions.from_args`); :func:`content_pixel_size` resolves the content's
pixel size. The loading itself is :func:`faket.imaging.reference.prepare_reference`.
"""

from __future__ import annotations

import math

from faket.errors import InputError
from faket.imaging.reference_options import ANGLES_OPTION as _ANG
from faket.imaging.reference_options import PIXEL_SIZE_OPTION as _OPT


def add_reference_args(p, kind: str) -> None:
    """Options for real references; ``kind`` is ``noise`` (``--reference-*``) or ``style`` (``--style-*``)."""
    g = p.add_argument_group("real references (sampling, tilt metadata, hazards; see docs/references.md)")
    g.add_argument(
        _OPT[kind],
        dest="ref_pixel_size",
        type=float,
        action="append",
        default=None,
        metavar="A",
        help="pixel size of the reference in Angstrom, used when its header has none (0 or 1); "
        "give once for all references or once per reference",
    )
    g.add_argument(
        "--content-pixel-size",
        type=float,
        default=None,
        metavar="A",
        help="pixel size of the content in Angstrom, used when its header has none",
    )
    g.add_argument(
        "--assume-same-sampling",
        action="store_true",
        help="use references at their own sampling (no resampling, no pixel sizes needed)",
    )
    g.add_argument(
        _ANG[kind],
        dest="ref_angles_file",
        action="append",
        default=None,
        metavar="F",
        help="angles of each reference (.tlt, .rawtlt, .mdoc, STAR[:NAME]) when not beside it "
        "(default: REF.tlt / .rawtlt / .mrc.mdoc / .mdoc / .star / .tomostar)",
    )
    g.add_argument(
        "--exclude-tilts",
        action="append",
        default=None,
        metavar="LIST",
        help="reference tilts to leave out, 1-based in stack order, e.g. 1,5,40-41 (IMOD EXCLUDELIST); "
        "once for all references or once per reference",
    )
    g.add_argument(
        "--keep-bad-tilts",
        action="store_true",
        help="do not exclude tilts detected as blank, dark or saturated (they are still reported)",
    )
    g.add_argument(
        "--invert-reference",
        action="store_true",
        help="flip the reference's contrast (each tilt about its mean) before use",
    )


def content_pixel_size(args, m, path) -> float | None:
    """The content's pixel size: header, else ``--content-pixel-size``; ``None`` with --assume-same-sampling.
    Unknown otherwise: :class:`InputError` naming the file and the option."""
    opt = getattr(args, "content_pixel_size", None)
    if opt is not None and not (math.isfinite(opt) and opt > 0):
        raise InputError(f"--content-pixel-size {opt:g}: must be positive")
    if m.voxel_size_a is not None:
        return float(m.voxel_size_a)
    if opt is not None:
        return float(opt)
    if args.assume_same_sampling:
        return None
    raise InputError(
        f"{path}: no pixel size in the header (0 or 1); pass --content-pixel-size A (or --assume-same-sampling)"
    )
