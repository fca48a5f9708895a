"""``faket qc``: figures and metrics for one simulated tomogram (montage, spectra, tilt statistics, slices)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from faket.cli._common import Step, check_not_same, info, resolve_device
from faket.errors import InputError
from faket.style.settings import StyleSettings

HELP = "QC figures (PNG) and metrics (JSON) of one tomogram's tilt-series stages and reconstruction"

DESCRIPTION = """\
Quality control of one simulated tomogram. Give any of the tilt-series stages (each X.mrc with its
angles in X.tlt beside it) and/or the reconstructed tomogram; at least one input is needed.

Writes into OUTDIR (a figure is written when its inputs are given):
  montage.png     tilts nearest 0, +-30, +-60 deg: noiseless | content | noisy | styled | reference,
                  each image stretched from its 1st to its 99th percentile   (needs a tilt-series)
  spectra.png     radially averaged power spectra, log10, mean over tilts     (needs a tilt-series)
  tilt_stats.png  per-tilt mean and standard deviation against the angle      (needs a tilt-series)
  slices.png      tomogram central XY and XZ slices with class-mask contours  (needs --tomogram)
  metrics.json    spectral distance of each stage to the reference, Gram (style) distance (needs
                  faket.style.vgg), SSIM / PSNR against the content, per-tilt statistics, provenance

Definitions: docs/qc-evaluate.md. Example:
  faket qc --noiseless noiseless.mrc --content content.mrc --noisy noisy.mrc --styled styled.mrc \\
           --reference reference.mrc --tomogram tomogram.mrc --class-mask class_mask.mrc -o qc/model_0
"""

FIGURES = ("montage.png", "spectra.png", "tilt_stats.png", "slices.png")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs (at least one)")
    for stage, what in (
        ("noiseless", "noiseless projections"),
        ("content", "content projections"),
        ("noisy", "noisy projections"),
        ("styled", "styled (FakET) projections"),
        ("reference", "reference (real / benchmark) tilt-series"),
    ):
        g.add_argument(f"--{stage}", metavar="MRC", help=f"{what} (angles from the .tlt beside it)")
    g.add_argument("--tomogram", metavar="MRC", help="reconstructed tomogram (Z, Y, X)")
    g.add_argument("--class-mask", metavar="MRC", help="class mask on the tomogram's grid (contours on slices)")
    g.add_argument(
        "--particles",
        metavar="TABLE",
        help="particle table (CSV / STAR / SHREC txt) to name the classes in the slices legend",
    )
    o = p.add_argument_group("options")
    o.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    o.add_argument("--name", help="title for the figures (default: the output folder's name)")
    o.add_argument(
        "--montage-angles",
        default="-60,-30,0,30,60",
        metavar="LIST",
        help="target angles of the montage rows and Gram tilts (default: -60,-30,0,30,60)",
    )
    o.add_argument("--no-gram", action="store_true", help="skip the Gram (VGG style) distance")
    o.add_argument(
        "--gram-crop",
        type=int,
        default=256,
        metavar="PX",
        help="Gram distance on the central PX x PX crop of each tilt (default: 256; 0 = whole tilt)",
    )
    o.add_argument(
        "--vgg-weights",
        metavar="W",
        help="VGG-19 weights for the Gram distance: imagenet, random or a .pth state dict "
        "(default: imagenet when in the torch hub cache, else the metric is skipped)",
    )
    o.add_argument("--device", default="cpu", help="torch device for the Gram distance (default: cpu)")
    p.add_argument("--quiet", "-q", action="store_true", help="no info messages")


# the style transfer's layers and weights (FakET's; the weights are normalised to sum 1 by faket.evaluation.metrics.gram_distance)
STYLE_LAYERS = StyleSettings().style_layers
STYLE_LAYER_WEIGHTS = StyleSettings().style_layer_weights


def gram_features(args):
    """``(features_fn, layer_weights, note)`` for the Gram distance from :mod:`faket.style.vgg`, or
    ``(None, None, why not)`` when it cannot run (no ImageNet weights and no --vgg-weights).

    Each image is mapped to [0, 1] by its own 0.1..99.9 percentiles (clipped), the VGG input range.
    """
    # lazy: numpy (faket's start-up imports every command module)
    from faket.style import vgg

    weights = args.vgg_weights
    if weights is None:
        if not vgg.imagenet_cache_path().exists():
            return (
                None,
                None,
                (
                    f"skipped: no ImageNet VGG-19 weights at {vgg.imagenet_cache_path()} "
                    "(pass --vgg-weights PATH.pth, or --vgg-weights random for random weights)"
                ),
            )
        weights = "imagenet"
    # lazy: numpy, torch (faket's start-up imports every command module)
    import numpy as np
    import torch

    device = resolve_device(args.device)
    model, winfo = vgg.build_vgg(weights, depth=max(STYLE_LAYERS), device=device)

    def features(img):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = np.percentile(a, [0.1, 99.9])
        a = np.clip((a - lo) / (hi - lo), 0, 1) if hi > lo else np.full(a.shape, 0.5)
        x = torch.from_numpy(a.astype(np.float32))[None, None].to(device)
        with torch.no_grad():
            out = model(x, STYLE_LAYERS)
        return [out[i][0] for i in STYLE_LAYERS]

    note = (
        f"VGG-19 weights: {winfo.kind}"
        + (f" ({winfo.note})" if winfo.note else "")
        + f"; layers {list(STYLE_LAYERS)}, weights {list(STYLE_LAYER_WEIGHTS)}"
    )
    return features, STYLE_LAYER_WEIGHTS, note


def run(args) -> int:
    # lazy: matplotlib (faket's start-up imports every command module)
    import matplotlib

    matplotlib.use("Agg")
    # lazy: numpy (faket's start-up imports every command module)
    import numpy as np

    from faket.evaluation import qc
    from faket.formats.mrc import read_volume
    from faket.formats.tiltmeta import parse_angles, read_tiltseries
    from faket.provenance import _jsonable, build_record

    stage_paths = {s: getattr(args, s) for s in qc.STAGES if getattr(args, s, None)}
    if not stage_paths and not args.tomogram:
        raise InputError(
            "nothing to check: give at least one of --noiseless, --content, --noisy, --styled, "
            "--reference or --tomogram"
        )
    if args.class_mask and not args.tomogram:
        raise InputError("--class-mask needs --tomogram (its contours are drawn on the tomogram slices)")
    if args.gram_crop < 0:
        raise InputError(f"--gram-crop {args.gram_crop}: must be >= 0")
    targets = parse_angles(args.montage_angles)
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"--output {outdir}: exists and is not a folder")
    inputs = [*stage_paths.values(), args.tomogram, args.class_mask, args.particles]
    outputs = [outdir / f for f in (*FIGURES, "metrics.json")]
    check_not_same(inputs, outputs)
    name = args.name or outdir.resolve().name

    stages = {}
    for s, path in stage_paths.items():
        m, angles = read_tiltseries(path, what=f"{s} tilt-series")
        stages[s] = qc.TiltSeries(m.data, angles)
    tomo = mask = None
    class_names = None
    if args.tomogram:
        tomo = read_volume(args.tomogram, what="tomogram").data
    if args.class_mask:
        mask = read_volume(args.class_mask, what="class mask").data
        if mask.shape != tomo.shape:
            raise InputError(
                f"{args.class_mask}: class mask shape {mask.shape} differs from the tomogram's "
                f"{tomo.shape} (Z, Y, X); give the mask binned and cropped like the tomogram"
            )
    if args.particles:
        # lazy: numpy, pandas (faket's start-up imports every command module)
        from faket.formats.particles import read_particles

        df = read_particles(args.particles, box_zyx=tomo.shape if tomo is not None else None)
        class_names = {int(c): str(n) for c, n in zip(df["class_id"], df["class_name"])}

    gram_fn = gram_w = None
    gram_note = None
    if "reference" in stages and len(stages) > 1:
        if args.no_gram:
            gram_note = "skipped (--no-gram)"
        else:
            gram_fn, gram_w, gram_note = gram_features(args)

    metrics = (
        qc.compute_metrics(
            stages,
            gram_features=gram_fn,
            gram_weights=gram_w,
            gram_targets_deg=targets,
            gram_crop=args.gram_crop or None,
            gram_note=gram_note,
        )
        if stages
        else {}
    )
    if tomo is not None:
        metrics["tomogram"] = {"shape_zyx": list(tomo.shape), "mean": float(tomo.mean()), "std": float(tomo.std())}
        if mask is not None:
            vals, counts = np.unique(np.rint(mask).astype(np.int64), return_counts=True)
            metrics["tomogram"]["class_voxels"] = {
                (class_names or {}).get(int(v), str(int(v))) if v else "background": int(c)
                for v, c in zip(vals, counts)
            }

    written = []
    with Step("qc", args, inputs=inputs) as st:
        if stages:
            figs = {
                "montage.png": qc.montage_figure(stages, targets, title=name),
                "spectra.png": qc.spectra_figure(stages, title=name),
                "tilt_stats.png": qc.tilt_stats_figure(stages, title=name),
            }
        else:
            figs = {}
        if tomo is not None:
            figs["slices.png"] = qc.slices_figure(tomo, mask, class_names=class_names, title=name)
        for fname, fig in figs.items():
            fig.savefig(st.path(outdir / fname), format="png")
            written.append(fname)
        body = {"name": name, "figures": written, **metrics}
        body["provenance"] = build_record(step="qc", parameters=st.params(), inputs=st.inputs, seed=None, started=st.t0)
        st.path(outdir / "metrics.json").write_text(json.dumps(_jsonable(body), indent=2) + "\n")
    msg = f"wrote {', '.join(written + ['metrics.json'])} to {outdir}"
    spec = metrics.get("spectral_distance_to_reference")
    if spec:
        msg += "; spectral distance to reference: " + ", ".join(f"{k} {v['mean']:.3f}" for k, v in spec.items())
    info(args, msg)
    return 0
