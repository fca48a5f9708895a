"""``faket manifest``: check, add to, and stage entries of the data manifest (``data_manifest.csv``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from faket.cli._common import Step, add_common_args, check_not_same, info
from faket.errors import InputError
from faket.formats.manifest import (
    KINDS,
    STAGED_KINDS,
    Entry,
    check_entry,
    format_manifest,
    parse_manifest,
    read_manifest,
    select,
)

HELP = "check the data manifest's files and checksums, add entries, stage a reference for a run"
DESCRIPTION = """\
The data manifest lists every external input (columns name,kind,path_or_url,sha256,voxel_size_a,
angles_file,licence,notes; paths relative to the manifest's folder). Sub-commands:

  faket manifest check data_manifest.csv [--names a,b] [-o checked.json]
      verify that the named entries (default: every local entry) exist and match their sha256;
      exit 2 with one line naming the entry when a file is missing, altered, or not downloaded.
  faket manifest add data_manifest.csv NAME PATH --kind tiltseries [--angles-file F] [--voxel-size-a A]
      compute the sha256 of PATH and append the entry (--replace to overwrite an entry of that name).
  faket manifest stage data_manifest.csv NAME -o REF.mrc
      verify the entry, then write it as the run's reference: a tilt-series with REF.tlt, a 2-D
      micrograph, or a volume (kind tomogram), with the manifest's voxel size when the header has none.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="<action>")
    c = sub.add_parser("check", help="verify files exist and match their sha256")
    c.add_argument("manifest", help="data_manifest.csv")
    c.add_argument("--names", help="comma-separated entry names (default: every local entry)")
    c.add_argument("--root", help="folder that relative paths start from (default: the manifest's folder)")
    c.add_argument("-o", "--output", help="write a JSON record of what was checked")
    add_common_args(c, seed=False, threads=False)

    a = sub.add_parser("add", help="append an entry with its computed sha256")
    a.add_argument("manifest", help="data_manifest.csv (created when missing)")
    a.add_argument("name")
    a.add_argument("path", help="local file (stored relative to the manifest's folder when inside it)")
    a.add_argument("--kind", required=True)
    a.add_argument("--voxel-size-a", type=float)
    a.add_argument("--angles-file", default="")
    a.add_argument("--licence", default="")
    a.add_argument("--notes", default="")
    a.add_argument("--replace", action="store_true", help="overwrite an entry of the same name")
    add_common_args(a, seed=False, threads=False)

    s = sub.add_parser("stage", help="verify an entry and write it as a reference MRC (+ .tlt)")
    s.add_argument("manifest", help="data_manifest.csv")
    s.add_argument("name", help="entry name")
    s.add_argument("-o", "--output", required=True, help="output MRC")
    s.add_argument("--root", help="folder that relative paths start from (default: the manifest's folder)")
    s.add_argument(
        "--image", type=int, default=None, help="micrograph stacks: index of the image to use (default: the middle one)"
    )
    add_common_args(s, seed=False, threads=False)


def _root(args):
    return Path(args.root) if getattr(args, "root", None) else Path(args.manifest).resolve().parent


def _check(args) -> int:
    entries = read_manifest(args.manifest)
    names = [n.strip() for n in args.names.split(",") if n.strip()] if args.names else None
    chosen = select(entries, names, source=args.manifest)
    root = _root(args)
    checked = []
    for e in chosen:
        if names is None and not e.is_local:
            info(args, f"{e.name}: skipped ({'physics reference' if e.kind == 'physics' else 'not downloaded'})")
            continue
        prob = check_entry(e, root, source=args.manifest)
        if prob is not None:
            raise InputError(f"{args.manifest}: entry {prob}")
        checked.append(
            {
                "name": e.name,
                "kind": e.kind,
                "path": str(e.resolve(root)) if e.is_local else None,
                "sha256": e.sha256 or None,
            }
        )
        info(args, f"{e.name}: ok")
    if args.output:
        with Step("manifest", args, inputs=[args.manifest]) as st:
            st.write_sidecar(args.output, extra={"checked": checked})
    return 0


def _add(args) -> int:
    # lazy: numpy (faket's start-up imports every command module)
    from faket.formats.mrc import OutputTransaction, sha256sum

    man = Path(args.manifest)
    entries = read_manifest(man) if man.exists() else []
    if args.kind not in KINDS:
        raise InputError(f"--kind {args.kind}: expected one of {', '.join(KINDS)}")
    src = Path(args.path)
    if not src.is_file():
        raise InputError(f"{src}: file not found")
    root = man.resolve().parent
    try:
        stored = os.path.relpath(src.resolve(), root)
    except ValueError:  # pragma: no cover - other drive on Windows
        stored = str(src.resolve())
    if args.angles_file:
        ang = Path(args.angles_file)
        if not ang.is_file():
            raise InputError(f"--angles-file {ang}: file not found")
        angles_stored = os.path.relpath(ang.resolve(), root)
    else:
        angles_stored = ""
    e = Entry(
        name=args.name,
        kind=args.kind,
        path_or_url=stored,
        sha256=sha256sum(src),
        voxel_size_a=args.voxel_size_a,
        angles_file=angles_stored,
        licence=args.licence,
        notes=args.notes,
    )
    names = [x.name for x in entries]
    if e.name in names:
        if not args.replace:
            raise InputError(f"{man}: an entry named {e.name!r} exists (pass --replace to overwrite it)")
        entries[names.index(e.name)] = e
    else:
        entries.append(e)
    text = format_manifest(entries)
    parse_manifest(text, source=str(man))  # validates the new entry (name, voxel size, ...)
    with OutputTransaction() as tx:
        tx.path(man).write_text(text)
    print(",".join(e.row()))
    return 0


def _stage(args) -> int:
    # lazy: numpy (faket's start-up imports every command module)
    import numpy as np

    from faket.formats.mrc import read_mrc, read_volume
    from faket.formats.tiltmeta import read_tiltseries

    entries = read_manifest(args.manifest)
    (e,) = select(entries, [args.name], source=args.manifest)
    root = _root(args)
    if e.kind not in STAGED_KINDS:
        raise InputError(
            f"{args.manifest}: entry {e.name} is a {e.kind}; a reference must be a "
            f"{', '.join(STAGED_KINDS[:-1])} or {STAGED_KINDS[-1]}"
        )
    prob = check_entry(e, root, source=args.manifest)
    if prob is not None:
        raise InputError(f"{args.manifest}: entry {prob}")
    src = e.resolve(root)
    ang_file = e.resolve_angles(root)
    check_not_same([src, ang_file], [args.output])
    angles = None
    if e.kind == "tiltseries":
        m, angles = read_tiltseries(src, ang_file, what=f"tilt-series {e.name}")
        data = m.data
    elif e.kind == "micrograph":
        m = read_mrc(src, ndim=(2, 3), what=f"micrograph {e.name}")
        data = m.data
        if data.ndim == 3:
            i = data.shape[0] // 2 if args.image is None else args.image
            if not 0 <= i < data.shape[0]:
                raise InputError(f"--image {i}: {src} has {data.shape[0]} images")
            data = data[i]
    else:
        m = read_volume(src, what=f"tomogram {e.name}")
        data = m.data
    voxel = m.voxel_size_a if m.voxel_size_a is not None else e.voxel_size_a
    inputs = [src] + ([ang_file] if ang_file else [])
    with Step("manifest", args, inputs=inputs) as st:
        st.write_mrc(
            args.output,
            np.asarray(data, dtype=np.float32),
            voxel,
            angles=angles,
            image_stack=angles is not None,
            extra={
                "manifest_entry": {
                    "name": e.name,
                    "kind": e.kind,
                    "path_or_url": e.path_or_url,
                    "sha256": e.sha256,
                    "voxel_size_a": e.voxel_size_a,
                    "licence": e.licence,
                }
            },
        )
    return 0


def run(args) -> int:
    action = getattr(args, "action", None)
    if action == "check":
        return _check(args)
    if action == "add":
        return _add(args)
    if action == "stage":
        return _stage(args)
    raise InputError("faket manifest: give an action: check, add or stage (see faket manifest --help)")
