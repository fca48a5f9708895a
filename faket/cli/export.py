"""``faket export copick | relion``: write a results folder as a copick project (docs/copick.md) or a RELION 5
tomogram set (docs/relion.md)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from faket.cli._common import Step, info, progress
from faket.errors import InputError

HELP = "export a results folder to the formats other tools read (copick projects, RELION 5 tomogram sets)"
DESCRIPTION = """\
faket export copick RESULTS -o PROJECT [--overwrite]

Writes PROJECT/copick_config.json and its overlay tree through copick's own API, from RESULTS/dataset.csv
(every tomogram, modality and binning; see faket dataset):
  one run per tomogram; one voxel spacing per binning (the tomogram's voxel size); one tomogram type per
  modality (faket -> wbp, noisy -> wbp-noisy, baseline -> wbp-baseline, noiseless -> wbp-noiseless);
  picks per particle class (user faket, session 0: copick's session of a tool's picks, the one copick-torch
  reads; the layout seed is in faket_export.json), locations in Angstrom
  (voxel i's centre at i x voxel size) and the 4x4 object -> tomogram transform from the RELION angles;
  segmentations: multilabel "classes" (= class_mask_bin<B>.mrc), one instance segmentation per object
  (= occupancy_mask_bin<B>.mrc, value = particle_id = the picks' instance_id), a binary one per membrane /
  vesicle object. Class names map reversibly onto copick names: ribosome_like -> ribosome-like (docs/copick.md).

The project is written in a temporary folder beside PROJECT (.PROJECT.tmp-PID) and renamed at the end: a
failed export leaves nothing; one killed outright (SIGKILL) leaves that folder, which the next export removes
(its process gone); an existing non-empty PROJECT is only replaced with --overwrite. Needs `pip install copick==1.31.0`
(or faket[copick]).

Read picks back: faket layout --particles / faket evaluate --truth / --pred take
  copick://PROJECT/RUN/OBJECT[?user=U&session=S&voxel_spacing=V]   (OBJECT '*' = every object)
or a picks JSON path (PROJECT/ExperimentRuns/RUN/Picks/USER_SESSION_OBJECT.json).
"""


RELION_DESCRIPTION = """\
faket export relion RESULTS -o FOLDER [--modality faket] [--bin B]

Writes a RELION 5 tomogram set into FOLDER (a RELION project folder: run RELION there), from
RESULTS/dataset.csv (see faket dataset), one modality at one binning:
  tomograms.star            one row per tomogram (rlnTomoName = the tomogram folder's name): voltage, Cs,
                            amplitude contrast, tilt-series pixel size, handedness, binning, bin-1 size, the
                            reconstructed tomogram (tomogram[_<modality>]_bin<B>.mrc) and its tilt-series STAR
  tilt_series/<name>.star   one row per tilt image of the tilt-series the tomogram was reconstructed from
                            (RESULTS/<name>/tiltseries/<modality>.mrc): image, angle, pre-exposure, defocus
  particles.star            optics block + every tomogram's particles (particles_bin<B>.csv): centred
                            coordinates in A from the bin-1 tomogram centre, angles, class, optics group
  filament_subunits.star    (cellular layouts) the filament subunits with RELION's helical priors
Paths inside are relative to FOLDER. CTF: a tilt-series made by `faket reference` (the physics path) gives
its voltage, Cs, amplitude contrast, defocus and dose; the other modalities have no CTF and get a flat one
(defocus 0, Cs 0, amplitude contrast 1: RELION's CTF is then 1) and no dose (docs/relion.md).
Everything is written, or nothing (an existing tomograms.star is only replaced with --overwrite).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="export_format", metavar="<format>")
    c = sub.add_parser(
        "copick",
        help="a copick filesystem project (OME-Zarr tomograms, picks, segmentations)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("results", metavar="RESULTS", help="results folder holding dataset.csv (or the CSV itself)")
    c.add_argument("-o", "--output", required=True, metavar="PROJECT", help="project folder to write")
    c.add_argument("--overwrite", action="store_true", help="replace an existing non-empty PROJECT")
    c.add_argument(
        "--user-id", default="faket", metavar="U", help="copick user id of picks and segmentations (default: faket)"
    )
    c.add_argument(
        "--session-id",
        metavar="S",
        help="copick session id of every pick and segmentation "
        "(default: 0, copick's session of a tool's picks, which copick-torch's datasets read)",
    )
    c.add_argument(
        "--tomo-type",
        action="append",
        default=[],
        metavar="MODALITY=TYPE",
        help="copick tomogram type of a modality (repeatable; default faket=wbp, noisy=wbp-noisy, "
        "baseline=wbp-baseline, noiseless=wbp-noiseless)",
    )
    c.add_argument(
        "--levels",
        type=int,
        default=3,
        metavar="N",
        help="OME-Zarr pyramid levels of each tomogram (copick's default: 3)",
    )
    c.add_argument(
        "--allow-empty",
        action="store_true",
        help="a particle class with no particle in a tomogram writes no picks (default: error)",
    )
    c.add_argument("--name", default=None, help="project name (default: faket <RESULTS folder name>)")
    c.add_argument("--quiet", "-q", action="store_true", help="no progress bar or info messages")
    c.set_defaults(_export_run=run_copick)
    r = sub.add_parser(
        "relion",
        help="a RELION 5 tomogram set (tomograms.star, tilt-series STAR, particles.star)",
        description=RELION_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("results", metavar="RESULTS", help="results folder holding dataset.csv (or the CSV itself)")
    r.add_argument("-o", "--output", required=True, metavar="FOLDER", help="folder to write (RELION's project folder)")
    r.add_argument(
        "--modality", default="faket", help="the tomograms and tilt-series of this modality (default: faket)"
    )
    r.add_argument(
        "--bin",
        type=int,
        default=None,
        metavar="B",
        help="the tomograms of this binning (default: the smallest in dataset.csv)",
    )
    r.add_argument("--overwrite", action="store_true", help="replace an existing tomograms.star in FOLDER")
    r.add_argument("--quiet", "-q", action="store_true", help="no info messages")
    r.set_defaults(_export_run=run_relion)


def run(args) -> int:
    fn = getattr(args, "_export_run", None)
    if fn is None:
        raise InputError(
            "name a format: faket export copick RESULTS -o PROJECT, or faket export relion RESULTS -o FOLDER"
        )
    return fn(args)


def _nonempty(p) -> bool:
    return p.exists() and (not p.is_dir() or any(p.iterdir()))


def run_copick(args) -> int:
    try:
        # lazy: copick (faket's start-up imports every command module)
        import copick  # noqa: F401
    except ImportError:
        raise InputError("copick is not installed: pip install copick==1.31.0 (or faket[copick])") from None
    # lazy: mrcfile, numpy, pandas (faket's start-up imports every command module)
    from faket.formats import copick as cn
    from faket.formats import copick_export as ce
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
        raise InputError(
            f"--tomo-type {unknown[0]}=...: no such modality in {plan.dataset_csv} (has {', '.join(plan.modalities)})"
        )
    ro.parent.mkdir(parents=True, exist_ok=True)
    for stale in cn.stale_staging_folders(ro):  # left by an export killed mid-way (its process is gone)
        shutil.rmtree(stale, ignore_errors=True)
        info(args, f"removed {stale}, left by an export that did not finish")
    staging = ro.parent / f".{ro.name}.tmp-{os.getpid()}"
    old = ro.parent / f".{ro.name}.old-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    n_tomos = sum(len(b.tomograms) for r in plan.runs for b in r.bins.values())
    bar = progress(total=n_tomos, args=args, desc="copick export", unit="tomogram")
    try:
        summary = ce.write_project(
            plan,
            staging,
            ro,
            user_id=args.user_id,
            session_id=args.session_id,
            tomo_types=overrides,
            levels=args.levels,
            name=args.name or f"faket {rr.name}",
            description=f"faket training set exported from {rr}",
            progress=bar.update,
        )
        rec = build_record(
            step="export copick",
            parameters={k: v for k, v in vars(args).items() if not k.startswith("_") and k != "func"},
            inputs=plan.inputs(),
            seed=None,
            started=t0,
            extra={"copick": summary, "output": str(ro)},
        )
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
    info(
        args,
        f"{len(plan.runs)} runs, {n_tomos} tomograms, {n_picks} picks of {len(plan.classes)} objects "
        f"-> {out}/copick_config.json ({time.perf_counter() - t0:.1f} s)",
    )
    return 0


def _relion_tilt_series(res_base, tomo_dir, tomogram, modality, record):
    """The tilt-series a tomogram was reconstructed from: RESULTS/<tomo>/tiltseries/<modality>.mrc, else the
    path in the tomogram's provenance (absolute, or relative to the folder above RESULTS or to the cwd)."""
    cands = [tomo_dir / "tiltseries" / f"{modality}.mrc"]
    given = (record.get("parameters") or {}).get("tilts")
    if given:
        g = Path(given)
        cands += [g] if g.is_absolute() else [res_base.parent / g, Path.cwd() / g]
    for c in cands:
        if c.is_file():
            return c

    raise InputError(f"{tomogram}: its tilt-series is not found (looked for {', '.join(map(str, cands))})")


def _read_json(path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        from faket.errors import InputError

        raise InputError(f"{path}: not a readable provenance JSON ({exc})") from None


def _bin1_size(record, ts_shape, tomo_shape, b):
    """(X, Y, Z) of the bin-1 tomogram: the detector width and height; Z from the reconstruction's
    --z-range a:b (b - a), --thickness NZ (NZ x B), --volume-z, else the tomogram's depth x B."""
    # lazy: numpy (faket's start-up imports every command module)
    from faket.formats.mrc import parse_range

    p = record.get("parameters") or {}
    ny, nx = int(ts_shape[1]), int(ts_shape[2])
    if p.get("z_range"):
        za, zb = parse_range(str(p["z_range"]))
        nz = zb - za
    elif p.get("thickness"):
        nz = int(p["thickness"]) * b
    elif p.get("volume_z"):
        nz = int(p["volume_z"])
    else:
        nz = int(tomo_shape[0]) * b
    return nx, ny, nz


def run_relion(args) -> int:
    # lazy: numpy, pandas (faket's start-up imports every command module)
    from faket.formats import relion as rl
    from faket.formats.mrc import read_mrc_header
    from faket.formats.particles import read_particles
    from faket.formats.tiltmeta import read_tlt, tlt_path
    from faket.layout.filaments import helical_priors

    t0 = time.perf_counter()
    res = Path(args.results)
    csv_path = res if res.suffix.lower() == ".csv" else res / "dataset.csv"
    if not csv_path.is_file():
        if not res.exists():
            raise InputError(f"{res}: results folder not found")
        raise InputError(f"{csv_path}: not found (the workflow writes it last; or index tomograms with faket dataset)")
    base = csv_path.resolve().parent
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if (out / rl.TOMOGRAMS_STAR).exists() and not args.overwrite:
        raise InputError(f"{out / rl.TOMOGRAMS_STAR}: exists (pass --overwrite to replace it)")
    try:
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{csv_path}: not a readable CSV ({exc})") from None
    need = ("tomogram", "modality", "bin", "tomogram_path", "particles_csv")
    if rows and any(k not in rows[0] for k in need):
        raise InputError(f"{csv_path}: missing column(s) {', '.join(k for k in need if k not in rows[0])}")
    mod_rows = [r for r in rows if r["modality"].strip() == args.modality]
    if not mod_rows:
        have = sorted({r["modality"].strip() for r in rows})
        raise InputError(f"{csv_path}: no tomogram of modality {args.modality!r} (has {', '.join(have) or 'none'})")
    try:
        bins = sorted({int(r["bin"]) for r in mod_rows})
    except ValueError:
        raise InputError(f"{csv_path}: bin must be an integer") from None
    b = args.bin if args.bin is not None else bins[0]
    sel = [r for r in mod_rows if int(r["bin"]) == b]
    if not sel:
        raise InputError(f"{csv_path}: modality {args.modality} has no tomograms at bin {b} (has {bins})")
    outdir = out.resolve()

    def rel(p: Path) -> str:
        return os.path.relpath(p.resolve(), outdir)

    entries, series, parts, fils, inputs = [], {}, [], [], [csv_path]
    for r in sel:
        name = r["tomogram"].strip()
        if not name or "/" in name or any(c.isspace() for c in name):
            raise InputError(f"{csv_path}: tomogram name {name!r} cannot be a RELION tomogram name")
        if name in series:
            raise InputError(f"{csv_path}: tomogram {name} is listed twice for {args.modality} bin {b}")
        tomo = base / r["tomogram_path"]
        if not tomo.is_file():
            raise InputError(f"{tomo}: listed in {csv_path} but missing")
        tomo_shape, _ = read_mrc_header(tomo, what="tomogram")
        rec = _read_json(tomo.with_suffix(".json"))
        ts = _relion_tilt_series(base, tomo.parent, tomo, args.modality, rec)
        ts_shape, px = read_mrc_header(ts, what="tilt-series")
        if len(ts_shape) != 3:
            raise InputError(f"{ts}: a tilt-series is a stack (tilt, Y, X), got shape {ts_shape}")
        if not px:
            raise InputError(f"{ts}: no pixel size in the header (RELION needs rlnTomoTiltSeriesPixelSize)")
        angles = read_tlt(tlt_path(ts))
        if len(angles) != ts_shape[0]:
            raise InputError(f"{tlt_path(ts)}: {len(angles)} angles for {ts_shape[0]} tilt images in {ts}")
        ctf = rl.ctf_from_provenance(_read_json(ts.with_suffix(".json")), len(angles))
        size = _bin1_size(rec, ts_shape, tomo_shape, b)
        series[name] = rl.tilt_series_table(angles, rel(ts), ctf)
        entries.append(
            {
                "name": name,
                "tilt_series_star": f"{rl.TILT_SERIES_DIR}/{name}.star",
                "optics": ctf.optics,
                "pixel_size_a": float(px),
                "size_xyz": size,
                "binning": b,
                "tomogram": rel(tomo),
                "defocus_slope": ctf.defocus_slope,
                "ctf": "defined" if ctf.defined else "flat",
            }
        )
        pcsv = base / r["particles_csv"]
        df = read_particles(pcsv)
        parts.append((name, df, float(px), size))
        inputs += [tomo, ts, tlt_path(ts), pcsv]
        fcsv = tomo.parent / f"filament_subunits_bin{b}.csv"
        if fcsv.is_file():
            # lazy: pandas (faket's start-up imports every command module)
            import pandas as pd

            try:
                fils.append((name, pd.read_csv(fcsv), float(px), size))
            except (OSError, ValueError) as exc:
                raise InputError(f"{fcsv}: not a readable CSV ({exc})") from None
            inputs.append(fcsv)
    groups, optics = rl.optics_groups([e["optics"] for e in entries], [e["pixel_size_a"] for e in entries])
    for e, g in zip(entries, groups):
        e["optics_group"] = g
    group_of = {e["name"]: e["optics_group"] for e in entries}
    # lazy: pandas (faket's start-up imports every command module)
    import pandas as pd

    ptab = pd.concat(
        [
            rl.particles_table(df, tomo_name=n, pixel_size_a=px, size_xyz=s, bin_factor=b, optics_group=group_of[n])
            for n, df, px, s in parts
        ],
        ignore_index=True,
    )
    with Step("export relion", args, inputs=inputs) as st:
        rl.write_star({"global": rl.tomograms_table(entries)}, st.path(out / rl.TOMOGRAMS_STAR))
        for name, t in series.items():
            rl.write_star({name: t}, st.path(out / rl.TILT_SERIES_DIR / f"{name}.star"))
        rl.write_star({"optics": optics, "particles": ptab}, st.path(out / rl.PARTICLES_STAR))
        if fils:
            ftab = pd.concat(
                [
                    rl.filament_table(
                        t,
                        helical_priors(t, voxel_size_a=px * b),
                        tomo_name=n,
                        pixel_size_a=px,
                        size_xyz=s,
                        bin_factor=b,
                        optics_group=group_of[n],
                    )
                    for n, t, px, s in fils
                ],
                ignore_index=True,
            )
            rl.write_star({"optics": optics, "particles": ftab}, st.path(out / rl.FILAMENTS_STAR))
        st.write_sidecar(
            out / "faket_export.json",
            extra={
                "relion": {
                    "modality": args.modality,
                    "bin": b,
                    "tomograms": [{k: (v if k != "optics" else asdict(v)) for k, v in e.items()} for e in entries],
                    "n_particles": len(ptab),
                }
            },
        )
    info(
        args,
        f"{len(entries)} tomograms ({args.modality}, bin {b}), {len(ptab)} particles -> "
        f"{out / rl.TOMOGRAMS_STAR} ({time.perf_counter() - t0:.1f} s)",
    )
    return 0
