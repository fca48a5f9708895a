"""``faket export copick``: write a results folder as a copick project (docs/copick.md)."""

from __future__ import annotations

import argparse

HELP = "export a results folder to the formats other tools read (copick projects)"
DESCRIPTION = """\
faket export copick RESULTS -o PROJECT [--overwrite]

Writes PROJECT/copick_config.json and its overlay tree through copick's own API, from RESULTS/dataset.csv
(every tomogram, modality and binning; see faket dataset):
  one run per tomogram; one voxel spacing per binning (the tomogram's voxel size); one tomogram type per
  modality (faket -> wbp, noisy -> wbp-noisy, baseline -> wbp-baseline, noiseless -> wbp-noiseless);
  picks per particle class (user faket, session = the tomogram's layout seed), locations in Angstrom
  (voxel i's centre at i x voxel size) and the 4x4 object -> tomogram transform from the RELION angles;
  segmentations: multilabel "classes" (= class_mask_bin<B>.mrc), one instance segmentation per object
  (= occupancy_mask_bin<B>.mrc, value = particle_id = the picks' instance_id), a binary one per membrane /
  vesicle object. Class names map reversibly onto copick names: ribosome_like -> ribosome-like (docs/copick.md).

The project is written in a temporary folder beside PROJECT and renamed at the end: a failed export leaves
nothing; an existing non-empty PROJECT is only replaced with --overwrite. Needs `pip install copick==1.31.0`
(or faket[copick]).

Read picks back: faket layout --particles / faket evaluate --truth / --pred take
  copick://PROJECT/RUN/OBJECT[?user=U&session=S&voxel_spacing=V]   (OBJECT '*' = every object)
or a picks JSON path (PROJECT/ExperimentRuns/RUN/Picks/USER_SESSION_OBJECT.json).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="export_format", metavar="<format>")
    c = sub.add_parser("copick", help="a copick filesystem project (OME-Zarr tomograms, picks, segmentations)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("results", metavar="RESULTS", help="results folder holding dataset.csv (or the CSV itself)")
    c.add_argument("-o", "--output", required=True, metavar="PROJECT", help="project folder to write")
    c.add_argument("--overwrite", action="store_true", help="replace an existing non-empty PROJECT")
    c.add_argument("--user-id", default="faket", metavar="U", help="copick user id of picks and segmentations "
                   "(default: faket)")
    c.add_argument("--session-id", metavar="S", help="one copick session id for every run (default: each "
                   "tomogram's layout seed; 0 when it has none)")
    c.add_argument("--tomo-type", action="append", default=[], metavar="MODALITY=TYPE",
                   help="copick tomogram type of a modality (repeatable; default faket=wbp, noisy=wbp-noisy, "
                        "baseline=wbp-baseline, noiseless=wbp-noiseless)")
    c.add_argument("--levels", type=int, default=3, metavar="N",
                   help="OME-Zarr pyramid levels of each tomogram (copick's default: 3)")
    c.add_argument("--allow-empty", action="store_true",
                   help="a particle class with no particle in a tomogram writes no picks (default: error)")
    c.add_argument("--name", default=None, help="project name (default: faket <RESULTS folder name>)")
    c.add_argument("--quiet", "-q", action="store_true", help="no progress bar or info messages")
    c.set_defaults(_export_run=run_copick)


def run(args) -> int:
    from faket.errors import InputError

    fn = getattr(args, "_export_run", None)
    if fn is None:
        raise InputError("name a format: faket export copick RESULTS -o PROJECT")
    return fn(args)


def _nonempty(p) -> bool:
    return p.exists() and (not p.is_dir() or any(p.iterdir()))


def run_copick(args) -> int:
    import os
    import shutil
    import time
    from pathlib import Path

    from faket.errors import InputError
    from faket.cli._common import info, progress

    try:
        import copick  # noqa: F401
    except ImportError:
        raise InputError("copick is not installed: pip install copick==1.31.0 (or faket[copick])") from None
    from faket.formats import copick as cn, copick_export as ce
    from faket.provenance import build_record, write_json

    t0 = time.perf_counter()
    out = Path(args.output)
    res = Path(args.results)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if _nonempty(out) and not args.overwrite:
        raise InputError(f"{out}: exists and is not empty (pass --overwrite to replace it)")
    rr, ro = res.resolve(), out.resolve()
    if ro == rr or ro in rr.parents:
        raise InputError(f"{out}: would replace the results folder {res}")
    overrides = {}
    for spec in args.tomo_type:
        if "=" not in spec:
            raise InputError(f"--tomo-type {spec}: expected MODALITY=TYPE (e.g. faket=wbp)")
        k, v = spec.split("=", 1)
        overrides[k.strip()] = v.strip()
    cn.check_copick_id(args.user_id, "--user-id")
    if args.session_id is not None:
        cn.check_copick_id(args.session_id, "--session-id")
    plan = ce.plan_export(res, allow_empty=args.allow_empty)
    unknown = sorted(set(overrides) - set(plan.modalities))
    if unknown:
        raise InputError(f"--tomo-type {unknown[0]}=...: no such modality in {plan.dataset_csv} "
                         f"(has {', '.join(plan.modalities)})")
    ro.parent.mkdir(parents=True, exist_ok=True)
    staging = ro.parent / f".{ro.name}.tmp-{os.getpid()}"
    old = ro.parent / f".{ro.name}.old-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    n_tomos = sum(len(b.tomograms) for r in plan.runs for b in r.bins.values())
    bar = progress(total=n_tomos, args=args, desc="copick export", unit="tomogram")
    try:
        summary = ce.write_project(plan, staging, ro, user_id=args.user_id, session_id=args.session_id,
                                   tomo_types=overrides, levels=args.levels,
                                   name=args.name or f"faket {rr.name}",
                                   description=f"faket training set exported from {rr}", progress=bar.update)
        rec = build_record(step="export copick", parameters={k: v for k, v in vars(args).items()
                                                             if not k.startswith("_") and k != "func"},
                           inputs=plan.inputs(), seed=None, started=t0,
                           extra={"copick": summary, "output": str(ro)})
        write_json(staging / "faket_export.json", rec)
        if ro.exists():
            ro.rename(old)
        staging.rename(ro)
    except BaseException:
        bar.close()
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not ro.exists():
            old.rename(ro)
        raise
    bar.close()
    shutil.rmtree(old, ignore_errors=True)
    n_picks = sum(sum(r["picks"].values()) for r in summary["runs"])
    info(args, f"{len(plan.runs)} runs, {n_tomos} tomograms, {n_picks} picks of {len(plan.classes)} objects "
               f"-> {out}/copick_config.json ({time.perf_counter() - t0:.1f} s)")
    return 0
