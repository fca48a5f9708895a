"""``faket stack``: gather tilt chunks (e.g. from scattered ``faket style --tilts a:b`` jobs) into one tilt-series."""

from __future__ import annotations

import argparse
import json

from faket.cli._common import Step, add_common_args, check_not_same
from faket.errors import InputError
from faket.formats.voxel import SAME_GRID_RTOL

HELP = "gather tilt chunks into one tilt-series (concatenate along tilt, angles from each .tlt)"
DESCRIPTION = """\
faket stack CHUNK1.mrc CHUNK2.mrc ... -o STYLED.mrc [--expect-angles CONTENT.tlt]

Concatenates the chunks along the tilt axis in the order given, with the angles from each chunk's .tlt.
Checks: every chunk has the same image size (Y, X) and voxel size; when the chunks' provenance sidecars
record the tilt range they cover (faket style --tilts a:b), the ranges must follow each other without gap
or overlap, starting at 0; with --expect-angles the gathered angles must equal that file's (to 1e-3 deg).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("chunks", nargs="+", help="tilt-series chunks (MRC with .tlt beside each), in tilt order")
    p.add_argument("-o", "--output", required=True, help="gathered tilt-series (MRC; .tlt and .json beside)")
    p.add_argument(
        "--expect-angles", metavar="TLT", help="angles the gathered series must have (e.g. the content's .tlt)"
    )
    add_common_args(p, seed=False, threads=False)


def _chunk_sidecar(path) -> dict:
    """A chunk's provenance sidecar (``{}`` when missing or unreadable)."""
    # lazy: numpy (faket's start-up imports every command module)
    from faket.formats.mrc import sidecar_path

    sp = sidecar_path(path)
    try:
        rec = json.loads(sp.read_text()) if sp.is_file() else {}
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


def _chunk_range(rec: dict):
    """The ``--tilts a:b`` a chunk's sidecar records, or ``None``."""
    from faket.formats.mrc import parse_range

    spec = (rec.get("parameters") or {}).get("tilts")
    if not spec:
        return None
    try:
        return parse_range(str(spec), "--tilts")
    except Exception:
        return None


def _chunk_run(rec: dict) -> dict:
    """Where and how a chunk was made (host, threads, device, environment, Gram cache), from its sidecar: the
    gathered sidecar keeps them, so two runs whose arrays differ can be told apart after the chunks are gone."""
    style = rec.get("style") or {}
    run = {k: rec.get(k) for k in ("host", "created", "wall_time_s", "environment") if k in rec}
    run.update({k: style[k] for k in ("threads", "device", "precision", "tilt_batch", "gram_cache") if k in style})
    return run


def run(args) -> int:
    # lazy: numpy (faket's start-up imports every command module)
    import numpy as np

    from faket.formats.tiltmeta import read_tiltseries, read_tlt, tlt_path

    check_not_same(args.chunks, [args.output])
    if len(set(map(str, args.chunks))) != len(args.chunks):
        raise InputError("a chunk is given twice")
    datas, angles, voxels, ranges, runs = [], [], [], [], []
    for c in args.chunks:
        # a one-tilt chunk reads back as a 2-D image (MRC nz = 1): accept it, but its angle is required
        m, a = read_tiltseries(c, allow_single=True, what="tilt chunk")
        if a is None:
            raise InputError(f"{c}: no tilt angles: expected {tlt_path(c)} beside it")
        if datas and m.data.shape[1:] != datas[0].shape[1:]:
            raise InputError(f"{c}: tilt size {m.data.shape[1:]} differs from {args.chunks[0]}'s {datas[0].shape[1:]}")
        if (
            voxels
            and (m.voxel_size_a is None) != (voxels[0] is None)
            or (voxels and m.voxel_size_a is not None and abs(m.voxel_size_a - voxels[0]) > SAME_GRID_RTOL * voxels[0])
        ):
            raise InputError(f"{c}: voxel size {m.voxel_size_a} A differs from {args.chunks[0]}'s {voxels[0]} A")
        datas.append(m.data)
        angles.append(a)
        voxels.append(m.voxel_size_a)
        rec = _chunk_sidecar(c)
        ranges.append(_chunk_range(rec))
        runs.append(_chunk_run(rec))
    if all(r is not None for r in ranges):
        end = 0
        for c, (a, b), d in zip(args.chunks, ranges, datas):
            if a != end:
                what = "overlaps" if a < end else "leaves a gap after"
                raise InputError(
                    f"{c}: covers tilts {a}:{b}, which {what} the previous chunks (0:{end}); "
                    "give the chunks in tilt order, each once"
                )
            if b - a != d.shape[0]:
                raise InputError(f"{c}: records tilts {a}:{b} but holds {d.shape[0]} tilts")
            end = b
    ang = np.concatenate(angles)
    out = np.concatenate(datas, axis=0)
    if args.expect_angles:
        want = read_tlt(args.expect_angles)
        if want.size != ang.size or np.max(np.abs(want - ang)) > 1e-3:
            raise InputError(
                f"--expect-angles {args.expect_angles}: the chunks give {ang.size} angles "
                f"that differ from its {want.size} (missing, extra or out-of-order chunk?)"
            )
    inputs = list(args.chunks) + ([args.expect_angles] if args.expect_angles else [])
    with Step("stack", args, inputs=inputs) as st:
        st.write_mrc(
            args.output,
            out,
            voxels[0],
            angles=ang,
            extra={
                "chunks": [
                    {
                        "path": str(c),
                        "tilts": None if r is None else f"{r[0]}:{r[1]}",
                        "n_tilts": int(d.shape[0]),
                        "run": run,
                    }
                    for c, r, d, run in zip(args.chunks, ranges, datas, runs)
                ]
            },
        )
    return 0
