"""``faket reconstruct TILTS.mrc -o TOMO.mrc``"""

from __future__ import annotations

from faket.cli._common import (
    Step,
    add_common_args,
    check_not_same,
    device_name,
    progress,
    resolve_cuda_device,
    set_threads,
    voxel_size_or_assume,
)
from faket.errors import InputError

HELP = "weighted (filtered) back-projection of a tilt-series into a tomogram"
DESCRIPTION = """\
Weighted back-projection with the exact geometry of `faket project`: the tilts are binned by --bin
(block mean of B x B pixels, blocks from index 0, as a camera bins), filtered along X with a ramp
(optionally windowed), and back-projected, each tilt weighted by the angular interval it covers.
Angles come from TILTS.tlt unless --angles-file is given. Output voxel size = input pixel size x B.

Z extent: --thickness NZ planes (output voxels) centred on the rotation axis (default: the binned
detector width), or --z-range a:b, the slab of original volume Z indices [a, b) of a volume whose Z
size was --volume-z (default: the unbinned detector width); output plane k then lies at original
index a + k*B + (B-1)/2, the same crop and binning `faket labels` applies to the masks. The MRC header
origin (Angstrom) records where voxel (0, 0, 0) sits in the original volume (voxel i of it at i x pixel
size): ((B-1)/2, (B-1)/2, a + (B-1)/2) x pixel size, as on faket labels' masks."""


def add_arguments(p) -> None:
    p.add_argument("tilts", metavar="TILTS.mrc", help="tilt-series (tilt, Y, X) with TILTS.tlt beside it")
    p.add_argument("-o", "--output", required=True, metavar="TOMO.mrc", help="output tomogram (Z, Y, X)")
    p.add_argument("--angles-file", metavar="F", help="tilt angles (default: TILTS.tlt)")
    p.add_argument(
        "--filter",
        default="ramp",
        choices=("ramp", "shepp-logan", "cosine", "hann", "none"),
        help="reconstruction filter (default: ramp)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--thickness",
        type=int,
        default=None,
        metavar="NZ",
        help="output Z size in output voxels, centred on the tilt axis",
    )
    g.add_argument("--z-range", default=None, metavar="a:b", help="slab [a, b) in original (unbinned) volume Z indices")
    p.add_argument(
        "--volume-z",
        type=int,
        default=None,
        metavar="NZ0",
        help="Z size of the original volume for --z-range (default: detector width)",
    )
    p.add_argument("--bin", type=int, default=1, metavar="B", help="bin the tilts by B first (default 1)")
    p.add_argument("--chunk-y", type=int, default=None, metavar="N", help="Y rows per block")
    p.add_argument(
        "--voxel-size", type=float, default=None, metavar="A", help="pixel size in Angstrom when the header has none"
    )
    add_common_args(p, seed=False, device=True)


def run(args) -> int:
    # lazy: numpy (faket's start-up imports every command module)
    from faket.formats.mrc import parse_range
    from faket.formats.tiltmeta import read_tiltseries
    from faket.imaging.projection import reconstruct, reconstruction_origin

    set_threads(args.threads)
    check_not_same([args.tilts, args.angles_file], [args.output])
    if args.bin < 1:
        raise InputError(f"--bin {args.bin}: must be at least 1")
    z_range = parse_range(args.z_range) if args.z_range else None
    if args.volume_z is not None and z_range is None:
        raise InputError("--volume-z only goes with --z-range")
    if z_range is not None:
        nz0 = args.volume_z
        if nz0 is not None and (z_range[0] < 0 or z_range[1] > nz0):
            raise InputError(f"--z-range {args.z_range}: outside the volume's 0:{nz0}")
    device = resolve_cuda_device(args.device)  # None: numba CPU kernels, no torch
    m, angles = read_tiltseries(args.tilts, args.angles_file)
    voxel = voxel_size_or_assume(args, m, what="tilt-series")
    inputs = [args.tilts, args.angles_file or str(m.path.with_suffix(".tlt"))]
    with Step("reconstruct", args, inputs=inputs) as st:
        with progress(total=m.data.shape[1] // args.bin, args=args, desc="reconstruct", unit="row") as bar:
            vol = reconstruct(
                m.data,
                angles,
                filter=args.filter,
                bin=args.bin,
                thickness=args.thickness,
                z_range=z_range,
                volume_z=args.volume_z,
                device=device,
                chunk_y=args.chunk_y,
                progress=bar.update,
            )
        origin = [
            c * voxel
            for c in reconstruction_origin(
                m.data.shape[2], args.bin, thickness=args.thickness, z_range=z_range, volume_z=args.volume_z
            )
        ]
        st.write_mrc(
            args.output,
            vol,
            voxel * args.bin,
            origin_a=origin,
            params={
                "angles_deg": angles,
                "input_pixel_size_a": voxel,
                "output_voxel_size_a": voxel * args.bin,
                "device": device_name(device),
            },
        )
    return 0
