"""``faket evaluate``: SHREC 2021-style scoring of particle picks (localisation and classification)."""

from __future__ import annotations

import argparse

HELP = "score particle picks against the truth (SHREC 2021 rules): F1, per-class scores, confusion matrix"

DESCRIPTION = """\
Score particle picks against a labelled tomogram the way the SHREC 2021 cryo-ET evaluation does.

A pick (rounded to the nearest voxel) is a hit when it falls inside a true particle's region of the
occupancy mask, dilated by one voxel (6-connected). Localisation: TP = particles hit at least once,
precision = TP / picks (duplicates and false positives lower it), recall = TP / particles, F1.
Classification: each particle takes the class of the first pick that hit it (else "background");
per-class precision, recall, F1 from that confusion matrix.

Truth: a particle table (CSV / STAR / SHREC particle_locations.txt) whose particle_id is the id in the
occupancy mask, coordinates in voxels of the mask's grid. Picks: CSV (columns x, y, z and optionally
class_name or class_id), RELION STAR, or SHREC txt ("CLASS x y z ..." a line), in voxels of a tomogram
binned by --pred-bin relative to the mask (x = x_b*B + (B-1)/2; z = a + z_b*B + (B-1)/2 with
--pred-z-offset a).

Writes the metrics JSON (-o) and the confusion matrix CSV beside it (METRICS_confusion.csv) or --confusion.

Example:
  faket evaluate --truth particles.csv --occupancy occupancy_mask.mrc --pred picks.csv -o metrics.json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs")
    g.add_argument("--truth", required=True, metavar="TABLE",
                   help="true particles: CSV, STAR or SHREC particle_locations.txt (voxels of the mask grid)")
    g.add_argument("--occupancy", required=True, metavar="MRC",
                   help="occupancy (instance) mask: particle_id per voxel, 0 = background")
    g.add_argument("--pred", required=True, metavar="PICKS", help="picks: CSV, STAR or SHREC txt")
    g.add_argument("--pred-format", choices=["auto", "csv", "star", "shrec", "deepfinder"], default="auto",
                   help="format of --pred (default: from the extension; .txt = SHREC, .xml = DeepFinder "
                        "object list)")
    g.add_argument("--pred-bin", type=float, default=1, metavar="B",
                   help="picks are in a tomogram binned by B relative to the mask (default: 1)")
    g.add_argument("--pred-z-offset", type=float, default=0.0, metavar="A",
                   help="picked tomogram starts at mask z index A (Z-cropped), before binning (default: 0)")
    g.add_argument("--pred-voxel-size", type=float, metavar="A",
                   help="voxel size (A) of the picked tomogram, for RELION 5 centred STAR picks "
                        "(default: the mask's voxel size x --pred-bin)")
    g.add_argument("--pred-box", metavar="Z,Y,X",
                   help="size (voxels) of the picked tomogram, for RELION 5 centred STAR picks "
                        "(default without --pred-z-offset: the mask's size // --pred-bin)")
    g.add_argument("--voxel-size", type=float, metavar="A",
                   help="voxel size (A) of the mask grid, for a RELION 5 STAR truth table "
                        "(default: the occupancy mask header)")
    g.add_argument("--exclude-class", action="append", default=[], metavar="NAME",
                   help="leave this class out of the scores (repeatable; SHREC 2021 left out 4V94 and vesicle)")
    g.add_argument("--clip", action="store_true",
                   help="clamp picks outside the volume to its border (SHREC does); default: error")
    g.add_argument("--no-dilation", action="store_true",
                   help="do not dilate the occupancy mask by one voxel (SHREC dilates)")
    o = p.add_argument_group("outputs")
    o.add_argument("-o", "--output", required=True, metavar="JSON", help="metrics JSON")
    o.add_argument("--confusion", metavar="CSV",
                   help="confusion matrix CSV (default: beside the JSON, <name>_confusion.csv)")
    p.add_argument("--quiet", "-q", action="store_true", help="no info messages")


# --------------------------------------------------------------------------------------------------
# reading


def _pick_format(path, fmt: str) -> str:
    from pathlib import Path

    from ..errors import InputError

    if fmt != "auto":
        return fmt
    suf = Path(path).suffix.lower()
    if suf in (".csv", ".tsv"):
        return "csv"
    if suf == ".star":
        return "star"
    if suf in (".txt", ".coords", ".dat"):
        return "shrec"
    if suf == ".xml":
        return "deepfinder"
    raise InputError(f"{path}: cannot tell the picks format from the extension {suf!r}; "
                     "pass --pred-format csv|star|shrec|deepfinder")


_COORD_ALIASES = {
    "x": ("x", "rlncoordinatex", "coord_x", "x_voxel", "x_vox"),
    "y": ("y", "rlncoordinatey", "coord_y", "y_voxel", "y_vox"),
    "z": ("z", "rlncoordinatez", "coord_z", "z_voxel", "z_vox"),
}
_NAME_ALIASES = ("class_name", "class", "pdb", "pdb_id", "label", "rlnclassname")
_ID_ALIASES = ("class_id", "rlnclassnumber", "class_number")


def _table_from_frame(df, source: str):
    """(points_xyz (P,3), class_names or None, class_ids or None) from a picks DataFrame."""
    import numpy as np
    import pandas as pd

    from ..errors import InputError

    cols = {str(c).strip().lower().lstrip("_"): c for c in df.columns}
    xyz = []
    for ax, aliases in _COORD_ALIASES.items():
        hit = next((cols[a] for a in aliases if a in cols), None)
        if hit is None:
            raise InputError(f"{source}: no {ax} column (need x, y, z; has {', '.join(map(str, df.columns))})")
        vals = pd.to_numeric(df[hit], errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(vals).all():
            i = int(np.argmax(~np.isfinite(vals)))
            raise InputError(f"{source}: row {i + 1}: column {hit} is not a finite number ({df[hit].iloc[i]!r})")
        xyz.append(vals)
    names = ids = None
    name_col = next((cols[a] for a in _NAME_ALIASES if a in cols), None)
    id_col = next((cols[a] for a in _ID_ALIASES if a in cols), None)
    if name_col is not None:
        names = [str(v).strip() for v in df[name_col].tolist()]
    if id_col is not None:
        vals = pd.to_numeric(df[id_col], errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(vals).all() or (vals != np.round(vals)).any():
            i = int(np.argmax(~np.isfinite(vals) | (vals != np.round(vals))))
            raise InputError(f"{source}: row {i + 1}: {id_col} is not an integer class id ({df[id_col].iloc[i]!r})")
        ids = vals.astype(np.int64).tolist()
    return np.stack(xyz, axis=1), names, ids


def _picks_from_particles(df, *, has_class: bool):
    """Picks from a :func:`faket.particles.read_particles` table: class ids only when the names are the
    reader's ``class<id>`` placeholders; no class when the file has no class column (``has_class``)."""
    import numpy as np

    pts = df[["x", "y", "z"]].to_numpy(dtype=np.float64)
    names = [str(v) for v in df["class_name"]]
    ids = [int(v) for v in df["class_id"]]
    if all(n == f"class{i}" for n, i in zip(names, ids)):
        return pts, None, ids          # only class numbers (rlnClassNumber, class_label): compare ids
    if not has_class and all(n == "particle" for n in names):
        return pts, None, None         # no class at all
    return pts, names, None


def read_picks(path, fmt: str = "auto", *, voxel_size_a=None, box_zyx=None):
    """Picks as ``(points_xyz (P, 3) float, class_names | None, class_ids | None)``.

    ``voxel_size_a`` / ``box_zyx`` (of the picked tomogram) are needed for RELION 5 centred STAR coordinates.
    """
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from ..errors import InputError
    from ..io import iter_lines

    if str(path).startswith("copick://") or str(path).lower().endswith(".json"):  # copick picks
        from ..particles import read_particles

        return _picks_from_particles(read_particles(path, voxel_size_a=voxel_size_a), has_class=True)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: picks file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected a picks file")
    fmt = _pick_format(p, fmt)
    if fmt == "csv":
        try:
            df = pd.read_csv(p, sep=None, engine="python", comment="#")
        except pd.errors.EmptyDataError:
            raise InputError(f"{p}: picks file is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{p}: not a readable CSV ({str(exc).splitlines()[0]})") from None
        return _table_from_frame(df, str(p))
    if fmt == "deepfinder":
        from ..particles import read_particles

        if p.suffix.lower() != ".xml":
            raise InputError(f"{p}: a DeepFinder object list must end in .xml")
        return _picks_from_particles(read_particles(p), has_class=True)   # class_label is required
    if fmt == "star":
        from ..particles import read_particles

        text = p.read_text(errors="replace")
        if "rlnCenteredCoordinateXAngst" in text:
            if box_zyx is None:
                raise InputError(f"{p}: RELION 5 centred coordinates need the picked tomogram's size "
                                 "(Z-cropped with --pred-z-offset): pass --pred-box Z,Y,X (voxels)")
            if voxel_size_a is None and "rlnTomoTiltSeriesPixelSize" not in text:
                raise InputError(f"{p}: RELION 5 centred coordinates need the picked tomogram's voxel size: "
                                 "pass --pred-voxel-size A")
        df = read_particles(p, voxel_size_a=voxel_size_a, box_zyx=box_zyx)
        return _picks_from_particles(df, has_class="rlnClassNumber" in text)
    # SHREC: "CLASS x y z [...]" a line, whitespace separated
    pts, names = [], []
    for i, line in iter_lines(p):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        parts = s.split()
        if len(parts) < 4:
            raise InputError(f"{p}: line {i}: expected 'CLASS x y z', got {line.strip()!r}")
        try:
            xyz = [float(v) for v in parts[1:4]]
        except ValueError:
            raise InputError(f"{p}: line {i}: x y z are not numbers: {line.strip()!r}") from None
        if not np.isfinite(xyz).all():
            raise InputError(f"{p}: line {i}: x y z are not finite: {line.strip()!r}")
        pts.append(xyz)
        names.append(parts[0])
    return np.asarray(pts, dtype=np.float64).reshape(-1, 3), names, None


def read_truth(path, *, voxel_size_a=None, box_zyx=None):
    """Truth table -> (particle_ids, points_xyz, class labels, {class_id: label})."""
    import numpy as np

    from ..errors import InputError
    from ..particles import read_particles

    df = read_particles(path, voxel_size_a=voxel_size_a, box_zyx=box_zyx)
    if len(df) == 0:
        raise InputError(f"{path}: truth table has no particles")
    ids = df["particle_id"].to_numpy(dtype=np.int64)
    pts = df[["x", "y", "z"]].to_numpy(dtype=np.float64)
    labels = [str(v) for v in df["class_name"]]
    id_to_label = {int(c): str(n) for c, n in zip(df["class_id"], df["class_name"])}
    return ids, pts, labels, id_to_label


def _pick_labels(names, ids, truth_labels, id_to_label):
    """Map pick classes onto the truth's spelling (names case-insensitively; ids via the truth's id->name)."""
    if truth_labels is None:
        return None
    if names is not None:
        by_upper = {t.upper(): t for t in truth_labels}
        return [by_upper.get(n.upper(), n) for n in names]
    if ids is not None:
        return [id_to_label.get(int(i), str(int(i))) for i in ids]
    return None


# --------------------------------------------------------------------------------------------------


def run(args) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from ..errors import InputError
    from ..evaluate import evaluate_picks, unbin_coordinates
    from ..io import read_volume
    from ..provenance import build_record, _jsonable
    from ._common import Step, check_not_same, info

    out = Path(args.output)
    conf = Path(args.confusion) if args.confusion else out.with_name(out.stem + "_confusion.csv")
    if args.pred_bin <= 0:
        raise InputError(f"--pred-bin {args.pred_bin:g}: must be positive")
    if out.suffix.lower() != ".json":
        raise InputError(f"--output {out}: expected a .json file name")
    if conf.resolve() == out.resolve():
        raise InputError(f"--confusion {conf}: same path as --output")
    check_not_same([args.truth, args.occupancy, args.pred], [out, conf])

    pred_box = None
    if args.pred_box:
        try:
            pred_box = tuple(int(v) for v in args.pred_box.replace("x", ",").split(","))
            assert len(pred_box) == 3 and min(pred_box) > 0
        except (ValueError, AssertionError):
            raise InputError(f"--pred-box {args.pred_box}: expected Z,Y,X positive integers") from None
    occ_m = read_volume(args.occupancy, what="occupancy mask")
    occ = occ_m.data
    vs = args.voxel_size if args.voxel_size is not None else occ_m.voxel_size_a
    ids, truth_xyz, truth_labels, id_to_label = read_truth(args.truth, voxel_size_a=vs, box_zyx=occ.shape)
    pred_vs = args.pred_voxel_size
    b_int = float(args.pred_bin).is_integer()
    if pred_box is None and args.pred_z_offset == 0 and b_int:
        # default: the picked tomogram is the mask grid binned by B (no Z crop)
        pred_box = tuple(int(n) // int(args.pred_bin) for n in occ.shape)
    if pred_vs is None and vs is not None:
        pred_vs = vs * float(args.pred_bin)
    pts_xyz, names, cids = read_picks(args.pred, args.pred_format, voxel_size_a=pred_vs, box_zyx=pred_box)
    if pts_xyz.shape[0] == 0:
        raise InputError(f"{args.pred}: no picks")

    xyz = np.empty_like(pts_xyz)
    xyz[:, 0] = unbin_coordinates(pts_xyz[:, 0], args.pred_bin)
    xyz[:, 1] = unbin_coordinates(pts_xyz[:, 1], args.pred_bin)
    xyz[:, 2] = unbin_coordinates(pts_xyz[:, 2], args.pred_bin, offset=args.pred_z_offset)
    pick_labels = _pick_labels(names, cids, truth_labels, id_to_label)

    try:
        ev = evaluate_picks(occ, ids, xyz[:, ::-1], truth_classes=truth_labels, truth_zyx=truth_xyz[:, ::-1],
                            pick_classes=pick_labels, exclude_classes=args.exclude_class,
                            dilate=not args.no_dilation, clip=args.clip, source=str(args.pred))
    except InputError as exc:
        msg = str(exc)
        if msg.startswith(str(args.pred)):
            raise
        raise InputError(f"{args.occupancy}: {msg}") from None

    with Step("evaluate", args, inputs=[args.truth, args.occupancy, args.pred]) as st:
        body = {
            "rules": "SHREC 2021: hit = pick inside the occupancy region of a particle dilated by one voxel; "
                     "precision = particles found / picks; recall = particles found / particles; "
                     "class of a particle = class of its first pick",
            "pred_bin": args.pred_bin,
            "pred_z_offset": args.pred_z_offset,
            "excluded_classes": list(args.exclude_class),
            **ev.to_dict(),
            "confusion_csv": str(conf) if ev.confusion is not None else None,
        }
        body["provenance"] = build_record(step="evaluate", parameters=st.params(), inputs=st.inputs,
                                          seed=None, started=st.t0)
        st.path(out).write_text(json.dumps(_jsonable(body), indent=2) + "\n")
        if ev.confusion is not None:
            st.path(conf).write_text(ev.confusion_csv())
    loc = ev.localisation
    cls = ev.classification
    msg = (f"localisation P={loc['precision']:.3f} R={loc['recall']:.3f} F1={loc['f1']:.3f} "
           f"({loc['true_positives']}/{loc['n_particles']} found, {loc['n_picks']} picks, "
           f"{loc['n_duplicates']} duplicates)")
    if cls is not None:
        msg += f"; classification macro F1={cls['macro_f1']:.3f}"
    elif truth_labels is not None:
        msg += "; picks carry no class (class_name / class_id): no classification scores"
    info(args, msg)
    return 0
