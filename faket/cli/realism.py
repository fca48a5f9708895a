"""``faket realism``: how far generated tilt-series are from a real one (C2ST, spectra, intensities)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from faket.cli._common import Step, add_common_args, check_not_same, info, set_threads, warn
from faket.cli._reference import add_reference_args
from faket.errors import InputError

HELP = "measure how far generated tilt-series are from real data (C2ST, spectra, intensities)"
DESCRIPTION = """\
Compare generated tilt-series (or tomograms, slice by slice) with a real tilt-series, micrograph or tomogram.

  faket realism NOISY.mrc FAKET.mrc --real REAL.mrc -o realism/
  faket realism NOISY.mrc --name noisy --real REAL.mrc --holdout odd -o realism/

The real data go through the same reference machinery as faket noise / style (pixel size and resampling,
angles from .tlt / .mdoc / STAR, bad tilts). Per generated data set and per tilt, against the real tilt
nearest in angle: classifier two-sample tests (a small CNN on 24x24 patches and a logistic regression on patch
log-spectra, 5 folds; 0.5 = indistinguishable, 1 = told apart every time), the radially averaged power
spectrum's log-distance, and the intensity distribution (W1 on standardised intensities, skewness, kurtosis);
and the same numbers for real against real (two disjoint halves of the real tilts: the floor).

Data fitted to the real file (faket noise / style with it as reference) must be scored on tilts they were not
fitted to: --holdout odd scores on the real tilts 1, 3, 5, ... (1-based, stack order) and the report prints
the --exclude-tilts list to fit on the others with. Writes REPORT/realism.json, realism.md, realism.png.
Definitions: docs/realism.md.
"""

OUTPUTS = ("realism.json", "realism.md", "realism.png")


def add_arguments(p) -> None:
    p.add_argument(
        "generated",
        nargs="+",
        metavar="GENERATED.mrc",
        help="generated tilt-series (angles in GENERATED.tlt) or tomograms (compared slice by slice)",
    )
    p.add_argument(
        "--real",
        required=True,
        metavar="REAL.mrc",
        help="real tilt-series (angles from .tlt / .rawtlt / .mdoc / STAR beside it), micrograph or tomogram",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="REPORT", help="output folder: realism.json, realism.md, realism.png"
    )
    p.add_argument(
        "--name",
        action="append",
        default=None,
        metavar="NAME",
        help="name of each generated file in the report (default: the file name); once per file",
    )
    p.add_argument(
        "--holdout",
        default="none",
        metavar="none|odd|even|LIST",
        help="real tilts to score on: none = all (data not fitted to this real file); odd / even = "
        "tilts 1,3,5,... / 2,4,6,... (1-based, stack order); LIST = e.g. 1-10,20 (as "
        "--exclude-tilts). Fit on the others: faket noise ... --exclude-tilts LIST (default: none)",
    )
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds of the C2ST (default: 5)")
    p.add_argument("--patch", type=int, default=24, help="patch side in pixels (default: 24)")
    p.add_argument(
        "--max-patches",
        type=int,
        default=2000,
        metavar="N",
        help="patches per class and comparison, at most (default: 2000)",
    )
    p.add_argument("--epochs", type=int, default=6, help="CNN training epochs (default: 6)")
    p.add_argument(
        "--max-angle-gap",
        type=float,
        default=5.0,
        metavar="DEG",
        help="generated tilts more than DEG degrees outside the scored real tilts' angle range are "
        "not scored (default: 5)",
    )
    add_reference_args(p, "realism")
    add_common_args(p, seed=True, device=False, threads=True)


def _holdout_rows(spec: str, keep, n_total: int):
    """``--holdout`` -> rows of the prepared real stack (whose file tilts, 0-based, are ``keep``)."""
    # lazy: numpy (faket's start-up imports every command module)
    import numpy as np

    from faket.formats.tiltmeta import parse_exclude

    s = (spec or "none").strip().lower()
    if s == "none":
        return None, []
    if s in ("odd", "even"):
        tilts = np.arange(0 if s == "odd" else 1, n_total, 2)
    else:
        tilts = parse_exclude(spec, n_total, option="--holdout")
    dropped = sorted(set(tilts.tolist()) - set(np.asarray(keep).tolist()))
    rows = np.flatnonzero(np.isin(keep, tilts))
    if rows.size == 0:
        raise InputError(f"--holdout {spec}: none of these real tilts is usable (all excluded or bad)")
    if rows.size == len(keep):
        raise InputError(f"--holdout {spec}: holds out every usable real tilt; none is left to fit on")
    return rows, [int(i) + 1 for i in dropped]


def _real_pixel(path, opts):
    """The real data's pixel size from its header or --real-pixel-size, or None."""
    # lazy: numpy (faket's start-up imports every command module)
    from faket.formats.mrc import read_mrc_header

    _, header = read_mrc_header(path, what="real data")
    if header is not None:
        return float(header)
    if opts.ref_pixel_size:
        return float(opts.ref_pixel_size[0])
    return None


def _fitted_tilts(gen_path, real_path) -> list[int] | None:
    """The 1-based tilts of ``real_path`` that ``gen_path`` was fitted on (``faket noise`` / ``style`` records them
    as ``kept_tilts_1based`` beside the reference's ``path`` in the output's provenance sidecar), or ``None``
    when the sidecar names no fit to that file."""
    # lazy: numpy (faket's start-up imports every command module)
    from faket.formats.mrc import sidecar_path

    side = sidecar_path(gen_path)
    try:
        rec = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    found: set[int] | None = None
    stack = [rec]
    while stack:
        d = stack.pop()
        if isinstance(d, dict):
            p, kept = d.get("path"), d.get("kept_tilts_1based")
            if isinstance(p, str) and isinstance(kept, list):
                try:
                    same = os.path.samefile(p, real_path)
                except OSError:
                    same = False
                if same:
                    found = (found or set()) | {int(i) for i in kept}
            stack.extend(d.values())
        elif isinstance(d, list):
            stack.extend(d)
    return None if found is None else sorted(found)


def _ranges(nums) -> str:
    """1-based numbers -> ``1,3,5-8`` (the --exclude-tilts syntax)."""
    nums = sorted(int(n) for n in nums)
    out, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if j == i else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(out)


def run(args) -> int:
    # lazy: matplotlib (faket's start-up imports every command module)
    import matplotlib

    matplotlib.use("Agg")
    # lazy: numpy (faket's start-up imports every command module)
    import numpy as np

    from faket.cli._reference import content_pixel_size
    from faket.evaluation import realism as R
    from faket.evaluation.realism_figure import realism_figure
    from faket.formats.tiltmeta import read_tiltseries
    from faket.imaging.reference import ReferenceOptions, prepare_reference
    from faket.imaging.sampling import plan_resample, resample_stack
    from faket.provenance import _jsonable, build_record

    for opt, v, lo in (
        ("--folds", args.folds, 2),
        ("--patch", args.patch, 4),
        ("--max-patches", args.max_patches, 4),
        ("--epochs", args.epochs, 1),
    ):
        if v < lo:
            raise InputError(f"{opt} {v}: must be >= {lo}")
    if not args.max_angle_gap >= 0:
        raise InputError(f"--max-angle-gap {args.max_angle_gap:g}: must be >= 0")
    names = args.name or [Path(g).name for g in args.generated]
    if len(names) != len(args.generated):
        raise InputError(
            f"--name given {len(names)} times for {len(args.generated)} generated files; give it once per file"
        )
    if len(set(names)) != len(names):
        raise InputError(f"names must differ: {', '.join(names)} (pass --name per file)")
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"--output {outdir}: exists and is not a folder")
    inputs = [*args.generated, args.real]
    check_not_same(inputs, [outdir / f for f in OUTPUTS])
    set_threads(args.threads)

    generated, px = {}, None
    for name, path in zip(names, args.generated):
        m, angles = read_tiltseries(path, require_angles=False, allow_single=True, what="generated tilt-series")
        p = content_pixel_size(args, m, path)
        if px is not None and p is not None and abs(p / px - 1) > 0.01:
            raise InputError(
                f"{path}: pixel size {p:g} A differs from {args.generated[0]}'s {px:g} A; "
                "compare data at one sampling per run"
            )
        px = p if px is None else px
        if min(m.data.shape[1:]) < args.patch:
            raise InputError(
                f"{path}: tilts of {m.data.shape[1]}x{m.data.shape[2]} are smaller than a "
                f"{args.patch}x{args.patch} patch"
            )
        generated[name] = (np.asarray(m.data, np.float32), angles)

    opts = ReferenceOptions.from_args(args)

    # compared at the coarser of the two samplings, where both carry their whole band: real data coarser than the
    # generated ones are used at their own pixel size and the generated data are Fourier-cropped to it (padding
    # the real data would leave their top band empty, which every spectral number would read as a difference)
    real_px = None if px is None else _real_pixel(args.real, opts)
    compare_px = px
    if real_px is not None and real_px > px * 1.01:
        compare_px = real_px
        info(
            args,
            f"{args.real}: coarser ({real_px:g} A) than the generated data ({px:g} A): comparing at "
            f"{real_px:g} A (generated tilts Fourier-cropped)",
        )
        for name, (data, ang) in list(generated.items()):
            generated[name] = (resample_stack(data, plan_resample(data.shape[1:], px, real_px)), ang)
    prep = prepare_reference(
        args.real,
        0,
        1,
        opts,
        kind="realism",
        content_T=None,
        content_angles=None,
        content_path=args.generated[0],
        content_pixel=compare_px,
        warn=warn,
        info=lambda msg: info(args, msg),
        what="real data",
    )
    n_total = int(prep.record["shape_raw"][0])
    rows, dropped = _holdout_rows(args.holdout, prep.keep, n_total)
    if dropped:
        warn(f"{args.real}: held-out tilt(s) {_ranges(dropped)} are excluded (bad or --exclude-tilts): not scored")
    if min(prep.data.shape[1:]) < args.patch:
        raise InputError(
            f"{args.real}: tilts of {prep.data.shape[1]}x{prep.data.shape[2]} (at the generated "
            f"data's sampling) are smaller than a {args.patch}x{args.patch} patch"
        )
    ids = [int(i) + 1 for i in prep.keep]

    def prog(i, n, what):
        info(args, f"realism: {i}/{n} done ({what})")

    report = R.realism_report(
        prep.data,
        prep.angles,
        generated,
        holdout=rows,
        seed=args.seed,
        folds=args.folds,
        max_patches=args.max_patches,
        patch=args.patch,
        max_angle_gap=args.max_angle_gap,
        epochs=args.epochs,
        real_ids=ids,
        progress=prog,
    )
    report["settings"]["holdout"] = args.holdout
    scored = set(report["real"]["scored"])
    for name, path in zip(names, args.generated):
        fitted = _fitted_tilts(path, args.real)
        m = report["modalities"][name]
        m["fitted_on_real_tilts"] = fitted
        m["fitted_on_scored_tilts"] = None if fitted is None else sorted(scored & set(fitted))
        if m["fitted_on_scored_tilts"]:
            warn(
                f"{path}: fitted on real tilt(s) {_ranges(m['fitted_on_scored_tilts'])} that are scored (its "
                "provenance says so): its scores are optimistic; fit it with --exclude-tilts "
                f"{_ranges(scored)} and score with --holdout (docs/realism.md)"
            )
    report["real"].update(
        {
            "path": str(args.real),
            "tilts_1based": True,
            "fit_recipe": (None if rows is None else f"--exclude-tilts {_ranges(report['real']['scored'])}"),
            "reference": prep.record,
        }
    )
    report["generated"] = {n: {"path": str(p), "pixel_size_a": px} for n, p in zip(names, args.generated)}
    report["settings"]["compared_at_pixel_a"] = compare_px
    with Step("realism", args, inputs=inputs) as st:
        fig = realism_figure(prep.data, generated, report, seed=args.seed)
        fig.savefig(st.path(outdir / "realism.png"), format="png")
        st.path(outdir / "realism.md").write_text(
            R.report_markdown(report, title=f"Realism against {Path(args.real).name}")
        )
        report["provenance"] = build_record(
            step="realism", parameters=st.params(), inputs=st.inputs, seed=args.seed, started=st.t0
        )
        st.path(outdir / "realism.json").write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    fl = report["floor"]["summary"]
    info(
        args,
        f"wrote {', '.join(OUTPUTS)} to {outdir}; C2ST (CNN): floor {fl['c2st_cnn']:.2f}, "
        + ", ".join(f"{n} {m['summary']['c2st_cnn']:.2f}" for n, m in report["modalities"].items()),
    )
    return 0
