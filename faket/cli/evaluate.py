"""``faket evaluate``: scoring of particle picks by the SHREC 2021 rules (localisation and classification)."""

from __future__ import annotations

import argparse
from pathlib import Path

from faket.cli._common import Step, check_not_same, info
from faket.errors import InputError, MissingGeometry
from faket.formats.names import instances_beside

HELP = (
    "score particle picks against the truth (the official SHREC 2021 numbers): F1, per-class scores, confusion matrix"
)

DESCRIPTION = """\
Score particle picks against a labelled tomogram: by default exactly as the SHREC 2021 cryo-ET
challenge's evaluation script (eval.py) does, every figure it prints (--rules shrec).

A pick (rounded to the nearest voxel, clamped into the volume) is a hit when it falls inside a true
particle's region of the occupancy mask, dilated by one voxel (6-connected). Localisation: TP = particles
hit at least once, precision = TP / picks (duplicates, false positives and picks on excluded particles
lower it), recall = TP / particles (excluded vesicles stay counted, as in the script), F1.
Classification: each particle takes the class of the first pick that hit it (else "background"); the
script's pycm statistics of that confusion matrix (background included; a class never predicted has
precision None).

--rules faket: cleaner definitions: picks outside the volume are an error (--clip clamps), picks on
excluded particles are dropped, excluded classes leave the particle count, macro averages over the true
classes only (docs/qc-evaluate.md has both side by side).

Truth: a particle table (CSV / STAR / SHREC particle_locations.txt) whose particle_id is the id in the
occupancy mask, coordinates in voxels of the mask's grid. Picks: CSV (columns x, y, z and optionally
class_name or class_id), RELION STAR, or SHREC txt ("CLASS x y z ..." a line), in voxels of a tomogram
binned by --pred-bin relative to the mask (x = x_b*B + (B-1)/2; z = a + z_b*B + (B-1)/2 with
--pred-z-offset a).

Writes the metrics JSON (-o) and the confusion matrix CSV beside it (METRICS_confusion.csv) or --confusion.

Example:
  faket evaluate --truth particles.csv --occupancy occupancy_mask.mrc --pred picks.csv -o metrics.json
"""


#: --rules choices (faket.evaluation.evaluate.RULES; listed here so --help needs no numpy import)
RULE_NAMES = ("shrec", "faket")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs")
    g.add_argument(
        "--truth",
        required=True,
        metavar="TABLE",
        help="true particles: CSV, STAR or SHREC particle_locations.txt (voxels of the mask grid)",
    )
    g.add_argument(
        "--occupancy",
        required=True,
        metavar="MRC",
        help="occupancy (instance) mask: particle_id per voxel, 0 = background",
    )
    g.add_argument("--pred", required=True, metavar="PICKS", help="picks: CSV, STAR or SHREC txt")
    g.add_argument(
        "--instances",
        metavar="CSV",
        help="instance table of a cellular layout (instance_id, kind, ...): occupancy ids whose kind is "
        "membrane or filament count as background (default: instances[_bin<B>].csv beside the "
        "occupancy mask, when there is one)",
    )
    g.add_argument(
        "--pred-format",
        choices=["auto", "csv", "star", "shrec", "deepfinder"],
        default="auto",
        help="format of --pred (default: from the extension; .txt = SHREC, .xml = DeepFinder object list)",
    )
    g.add_argument(
        "--pred-bin",
        type=float,
        default=1,
        metavar="B",
        help="picks are in a tomogram binned by B relative to the mask (default: 1)",
    )
    g.add_argument(
        "--pred-z-offset",
        type=float,
        default=0.0,
        metavar="A",
        help="picked tomogram starts at mask z index A (Z-cropped), before binning (default: 0)",
    )
    g.add_argument(
        "--pred-voxel-size",
        type=float,
        metavar="A",
        help="voxel size (A) of the picked tomogram, for RELION 5 centred STAR picks "
        "(default: the mask's voxel size x --pred-bin)",
    )
    g.add_argument(
        "--pred-box",
        metavar="Z,Y,X",
        help="size (voxels) of the picked tomogram, for RELION 5 centred STAR picks "
        "(default without --pred-z-offset: the mask's size // --pred-bin)",
    )
    g.add_argument(
        "--voxel-size",
        type=float,
        metavar="A",
        help="voxel size (A) of the mask grid, for a RELION 5 STAR truth table (default: the occupancy mask header)",
    )
    g.add_argument(
        "--exclude-class",
        action="append",
        default=[],
        metavar="NAME",
        help="leave this class out of the scores (repeatable; SHREC 2021 left out 4V94 and vesicle: "
        "the script's --skip_4v94 / --skip_vesicles)",
    )
    g.add_argument(
        "--rules",
        choices=RULE_NAMES,
        default=None,
        help="shrec (default): the official SHREC 2021 script's numbers; faket: faket's cleaner "
        "definitions (docs/qc-evaluate.md)",
    )
    g.add_argument(
        "--clip",
        action="store_true",
        help="--rules faket: clamp picks outside the volume to its border (SHREC rules always do); default: error",
    )
    g.add_argument(
        "--no-dilation", action="store_true", help="do not dilate the occupancy mask by one voxel (SHREC dilates)"
    )
    o = p.add_argument_group("outputs")
    o.add_argument("-o", "--output", required=True, metavar="JSON", help="metrics JSON")
    o.add_argument(
        "--confusion", metavar="CSV", help="confusion matrix CSV (default: beside the JSON, <name>_confusion.csv)"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no info messages")


def _pred_box(spec: str | None):
    if not spec:
        return None
    try:
        box = tuple(int(v) for v in spec.replace("x", ",").split(","))
    except ValueError:
        box = ()
    if len(box) != 3 or min(box) <= 0:
        raise InputError(f"--pred-box {spec}: expected Z,Y,X positive integers")
    return box


def _structure_ids(instances, occupancy) -> list[int]:
    """Occupancy ids of membranes and filaments (not scored particles), from ``--instances`` or the
    ``instances*.csv`` that faket layout / labels write beside ``occupancy_mask*.mrc``."""
    # lazy: pandas (faket's start-up imports every command module)
    import pandas as pd

    if instances:
        path = Path(instances)
    else:
        beside = instances_beside(Path(occupancy).name)
        path = Path(occupancy).with_name(beside) if beside else None
        if path is None or not path.is_file():
            return []
    if not path.is_file():
        raise InputError(f"{path}: instance table not found")
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if not {"instance_id", "kind"} <= set(df.columns):
        raise InputError(f"{path}: instance table needs the columns instance_id and kind")
    return [int(i) for i in df.loc[df["kind"].isin(["membrane", "filament"]), "instance_id"]]


_PICK_GEOMETRY_FLAGS = {
    "box_zyx": "pass --pred-box Z,Y,X (voxels; Z-cropped with --pred-z-offset)",
    "voxel_size_a": "pass --pred-voxel-size A",
}


def run(args) -> int:
    # lazy: numpy, pandas (faket's start-up imports every command module)
    from faket.evaluation.evaluate import DEFAULT_RULES, RULES, evaluate_table, picked_geometry
    from faket.formats.mrc import read_volume
    from faket.formats.particles import read_particles, read_picks
    from faket.provenance import build_record, write_json

    rules = args.rules or DEFAULT_RULES
    out = Path(args.output)
    conf = Path(args.confusion) if args.confusion else out.with_name(out.stem + "_confusion.csv")
    if args.pred_bin <= 0:
        raise InputError(f"--pred-bin {args.pred_bin:g}: must be positive")
    if out.suffix.lower() != ".json":
        raise InputError(f"--output {out}: expected a .json file name")
    if conf.resolve() == out.resolve():
        raise InputError(f"--confusion {conf}: same path as --output")
    check_not_same([args.truth, args.occupancy, args.pred], [out, conf])
    pred_box = _pred_box(args.pred_box)

    occ_m = read_volume(args.occupancy, what="occupancy mask")
    other_ids = _structure_ids(args.instances, args.occupancy)
    vs = args.voxel_size if args.voxel_size is not None else occ_m.voxel_size_a
    truth = read_particles(args.truth, voxel_size_a=vs, box_zyx=occ_m.data.shape)
    if len(truth) == 0:
        raise InputError(f"{args.truth}: truth table has no particles")
    pred_vs, pred_box = picked_geometry(
        occ_m.data.shape, vs, args.pred_bin, args.pred_z_offset, args.pred_voxel_size, pred_box
    )
    try:
        # a binned RELION 5 STAR is centred on its bin-1 tomogram: the mask's grid unless Z-cropped
        whole = float(args.pred_bin).is_integer() and args.pred_z_offset == 0 and args.pred_box is None
        picks = read_picks(
            args.pred,
            args.pred_format,
            voxel_size_a=pred_vs,
            box_zyx=pred_box,
            bin_factor=int(args.pred_bin) if float(args.pred_bin).is_integer() else 1,
            unbinned_box_zyx=occ_m.data.shape if whole else None,
        )
    except MissingGeometry as exc:
        raise InputError(f"{exc}: {_PICK_GEOMETRY_FLAGS[exc.needs]}") from None
    if len(picks) == 0:
        raise InputError(f"{args.pred}: no picks")
    try:
        ev = evaluate_table(
            occ_m.data,
            truth,
            picks,
            bin_factor=args.pred_bin,
            z_offset=args.pred_z_offset,
            exclude_classes=args.exclude_class,
            dilate=not args.no_dilation,
            clip=args.clip,
            source=str(args.pred),
            rules=rules,
            other_ids=other_ids,
        )
    except InputError as exc:
        if str(exc).startswith(str(args.pred)):
            raise
        raise InputError(f"{args.occupancy}: {exc}") from None

    with Step("evaluate", args, inputs=[args.truth, args.occupancy, args.pred]) as st:
        body = {
            "rules": RULES[rules],
            "rules_name": rules,
            "pred_bin": args.pred_bin,
            "pred_z_offset": args.pred_z_offset,
            "excluded_classes": list(args.exclude_class),
            **ev.to_dict(),
            "confusion_csv": str(conf) if ev.confusion is not None else None,
        }
        body["provenance"] = build_record(
            step="evaluate", parameters=st.params(), inputs=st.inputs, seed=None, started=st.t0
        )
        write_json(st.path(out), body)
        if ev.confusion is not None:
            st.path(conf).write_text(ev.confusion_csv())
    loc = ev.localisation
    msg = (
        f"localisation P={loc['precision']:.3f} R={loc['recall']:.3f} F1={loc['f1']:.3f} "
        f"({loc['true_positives']}/{loc['n_particles']} found, {loc['n_picks']} picks, "
        f"{loc['n_duplicates']} duplicates)"
    )
    if ev.classification is not None:
        mf1 = ev.classification["macro_f1"]
        msg += f"; classification macro F1={'None' if mf1 is None else format(mf1, '.3f')}"
    else:
        msg += "; picks carry no class (class_name / class_id): no classification scores"
    info(args, msg)
    return 0
