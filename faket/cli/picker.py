"""``faket picker train | segment | localize | truth | summarize``: the FakET paper's DeepFinder protocol."""

from __future__ import annotations

import argparse
import csv
import json
import warnings
from pathlib import Path

from faket.cli._common import (
    Step,
    add_common_args,
    check_not_same,
    info,
    progress,
    resolve_device,
    set_threads,
    show_progress,
)
from faket.errors import InputError
from faket.formats.names import DATASET_TRAINING_COLUMNS

# the picker's defaults, defined once in the core (config keys benchmark.picker.* use the same names)
from faket.picker import (
    DEFAULTS,  # light: no numpy, no torch
    LOSSES,
    N_BOOT,
    PRECISIONS,
)

HELP = "train a DeepFinder-style picker on faket data, segment tomograms, localise picks (needs faket[picker])"

DESCRIPTION = """\
A small, faithful harness of the picker protocol the FakET paper evaluated its data with (DeepFinder:
3D U-Net, Tversky loss, sliding-window segmentation, MeanShift localisation), in PyTorch + MONAI +
scikit-learn (pip install 'faket[picker]'). Each subcommand works alone:

  faket picker train --dataset results/dataset.csv --modality faket --bin 2 -o model.pt --steps 500
  faket picker train --tomogram t0.mrc --class-mask c0.mrc --particles p0.csv -o model.pt
  faket picker segment tomogram.mrc --model model.pt -o labels.mrc [--scores scores.npy]
  faket picker localize labels.mrc --model model.pt -o picks.csv
  faket evaluate --truth particles.csv --occupancy occupancy_mask.mrc --pred picks.csv -o metrics.json

The benchmark (one picker per modality and seed): snakemake --cores 2 --configfile config/benchmark.yaml
benchmark (docs/picker.md).
"""


def _device_args(p):
    add_common_args(p, seed=True, device=True)
    for a in p._actions:
        if a.dest == "device":
            a.default = "cpu"
            a.help = "cpu | cuda | cuda:I | auto (default: cpu; deterministic on CPU)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="picker_command", metavar="<command>")
    D = DEFAULTS

    t = sub.add_parser(
        "train",
        help="train the 3D U-Net on tomograms and class masks",
        description="Train DeepFinder's 3D U-Net (Adam; Tversky loss alpha=beta=0.5, plus "
        "cross-entropy by default: see --loss) on "
        "tomograms and their class masks (0 = background, class ids as faket labels writes "
        "them). Patches: class-balanced centres (MONAI), random shift, per-patch z-score, "
        "180-degree rotation about the tilt axis (Y) with probability --p-rotate.",
    )
    g = t.add_argument_group("inputs (pairs, or a dataset CSV)")
    g.add_argument("--tomogram", action="append", default=[], metavar="MRC", help="training tomogram (repeat)")
    g.add_argument(
        "--class-mask",
        action="append",
        default=[],
        metavar="MRC",
        help="its class mask, same shape (repeat, same order)",
    )
    g.add_argument(
        "--particles",
        action="append",
        default=[],
        metavar="CSV",
        help="its particle table (repeat, same order; gives class names and sizes)",
    )
    g.add_argument("--dataset", metavar="CSV", help="results/dataset.csv from faket dataset")
    g.add_argument("--modality", help="with --dataset: rows of this modality (faket, noisy, baseline, ...)")
    g.add_argument("--bin", type=int, help="with --dataset: rows of this binning")
    g.add_argument("--tomograms", metavar="A,B", help="with --dataset: only these tomogram names")
    h = t.add_argument_group("training")
    h.add_argument("--steps", type=int, default=D["steps"], help=f"optimiser steps (default {D['steps']})")
    h.add_argument("--batch", type=int, default=D["batch"], help=f"patches per step (default {D['batch']})")
    h.add_argument(
        "--patch", type=int, default=D["patch"], help=f"patch edge, multiple of 4 (default {D['patch']}; paper 56)"
    )
    h.add_argument("--lr", type=float, default=D["lr"], help=f"Adam learning rate (default {D['lr']:g})")
    h.add_argument(
        "--shift", type=int, default=D["shift"], help=f"random shift of patch centres, voxels (default {D['shift']})"
    )
    h.add_argument(
        "--p-rotate",
        type=float,
        default=D["p_rotate"],
        help=f"probability of the 180-degree rotation about Y (default {D['p_rotate']:g})",
    )
    h.add_argument(
        "--background-ratio",
        type=float,
        default=D["background_ratio"],
        help="background patch centres relative to one class's (default 1)",
    )
    h.add_argument(
        "--loss",
        choices=LOSSES,
        default=D["loss"],
        help="tversky+ce (default): the paper's Tversky (alpha = beta = 0.5) plus cross-entropy; "
        "tversky: the paper's loss alone, which collapsed to all-background in every "
        "small-scale run measured (docs/picker.md)",
    )
    h.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=D["precision"],
        help="fp32 (default); bf16: autocast, the network's forward pass in bfloat16 (weights, loss and Adam "
        "fp32), ~2.4x faster per step on a CPU with AMX, slower without; auto: bf16 on a CPU with AMX, "
        "fp32 elsewhere (the sidecar records which ran)",
    )
    h.add_argument(
        "--init",
        metavar="MODEL.pt",
        help="continue from this trained picker (fine-tuning): its weights are the start, the "
        "optimiser state is fresh (Adam restarts); classes are matched to the model's by name "
        "(--particles), the voxel size must be the model's",
    )
    t.add_argument("-o", "--output", required=True, metavar="MODEL.pt", help="trained model")
    t.add_argument("--loss-csv", metavar="CSV", help="loss per step (default: beside the model, MODEL_loss.csv)")
    _device_args(t)
    t.set_defaults(_picker_run=_train)

    s = sub.add_parser(
        "segment",
        help="class map and class scores of a tomogram (sliding window)",
        description="Segment a tomogram with overlapping windows (MONAI sliding-window "
        "inference, each window z-scored): argmax class map (MRC, uint8) and optionally "
        "the class probabilities (.npy, float16, (C, Z, Y, X)).",
    )
    s.add_argument("tomogram", metavar="TOMO.mrc")
    s.add_argument("--model", required=True, metavar="MODEL.pt")
    s.add_argument("-o", "--output", required=True, metavar="LABELS.mrc", help="class map")
    s.add_argument("--scores", metavar="SCORES.npy", help="also write class probabilities")
    s.add_argument("--patch", type=int, help="window edge (default: the model's training patch)")
    s.add_argument(
        "--overlap", type=float, default=D["overlap"], help=f"window overlap fraction (default {D['overlap']:g})"
    )
    s.add_argument("--batch", type=int, default=D["batch"], help="windows per forward pass")
    s.add_argument(
        "--any-voxel-size",
        action="store_true",
        help="segment even when the tomogram's voxel size differs from the training tomograms'",
    )
    _device_args(s)
    s.set_defaults(_picker_run=_segment)

    lo = sub.add_parser(
        "localize",
        help="picks from a class map (MeanShift, majority label per cluster)",
        description="Cluster the class map's foreground voxels with MeanShift (scikit-learn, "
        "bin seeding), give each cluster its majority class, drop clusters smaller than their "
        "class's minimum size, write the cluster centres as a faket particle CSV (voxels of the "
        "class map; columns size and score added) for `faket evaluate`. By default each class "
        "is clustered on its own with a bandwidth from its size (half its largest extent from "
        "the class table classes.json, or the diameter of its mean particle volume from "
        "--model), clusters longer or larger than one particle are split (k-means) and picks "
        "are put on their cluster: right at any sampling. --bandwidth / --bandwidth-a give "
        "DeepFinder's one fixed bandwidth instead. Class names and sizes: --model, --classes, "
        "else classes.json beside the class map, else the class map's JSON sidecar.",
    )
    lo.add_argument("labels", metavar="LABELS.mrc")
    lo.add_argument("-o", "--output", required=True, metavar="PICKS.csv")
    lo.add_argument("--model", metavar="MODEL.pt", help="class names and training particle sizes")
    lo.add_argument(
        "--classes",
        metavar="CSV|JSON",
        help="class names (and sizes): a class table classes.json (faket layout / labels) or a "
        "particle table (names only)",
    )
    lo.add_argument("--scores", metavar="SCORES.npy", help="class probabilities from segment (adds a score column)")
    bw = lo.add_mutually_exclusive_group()
    bw.add_argument(
        "--bandwidth",
        type=float,
        default=None,
        metavar="VOXELS",
        help="one MeanShift bandwidth in voxels for every class, DeepFinder's way (the FakET "
        "paper's benchmark: 5 at 20 A); default: each class's own, from its size",
    )
    bw.add_argument(
        "--bandwidth-a",
        type=float,
        default=None,
        metavar="A",
        help="one MeanShift bandwidth in Angstrom for every class (needs the voxel size in the header)",
    )
    lo.add_argument(
        "--min-size",
        action="append",
        default=[],
        metavar="N|CLASS=N",
        help="minimum cluster size in voxels, for all classes or one (name or id); repeatable",
    )
    lo.add_argument(
        "--min-size-fraction",
        type=float,
        default=D["min_size_fraction"],
        help="classes without --min-size: this fraction of the mean training particle size "
        "stored in --model (default 0.2; 0 = keep every cluster)",
    )
    lo.add_argument(
        "--max-points",
        type=int,
        default=50_000,
        help="above this many foreground voxels, MeanShift modes are found on an evenly strided "
        "subset and every voxel joins its nearest mode (default 50000)",
    )
    lo.add_argument(
        "--per-class",
        action="store_true",
        help="with --bandwidth / --bandwidth-a: cluster each class on its own (default then: all "
        "foreground together, as DeepFinder); the size-aware default always is per class",
    )
    cp = lo.add_argument_group("also write the picks into a copick project (Angstrom, one picks file per class)")
    cp.add_argument(
        "--copick",
        metavar="PROJECT",
        help="existing copick project (folder or copick_config.json) whose pickable objects include the picked classes",
    )
    cp.add_argument("--run", help="its run (created when missing; default: the class map's file stem)")
    cp.add_argument("--user-id", default=None, help="copick user id of the picks (default faket-picker)")
    cp.add_argument("--session-id", default="0", help="copick session id of the picks (default 0)")
    lo.add_argument("--quiet", "-q", action="store_true", help="no info messages")
    lo.set_defaults(_picker_run=_localize)

    tr = sub.add_parser(
        "truth",
        help="truth for a user's annotated tomogram: particle table + occupancy mask",
        description="Turn a user's picks (CSV / STAR / SHREC, voxels of the tomogram; or one run "
        "of a copick project) into what `faket evaluate` needs: a particle table numbered 1..N "
        "and an occupancy mask (given, or balls of --radius voxels around each pick). With "
        "--copick the run's tomogram is written too (tomogram.mrc), for `faket picker segment`.",
    )
    tr.add_argument("--tomogram", metavar="MRC", help="the annotated tomogram (for its shape)")
    tr.add_argument("--picks", metavar="TABLE", help="annotations: CSV, STAR, SHREC txt or copick://PROJECT/RUN/OBJECT")
    tr.add_argument("--occupancy", metavar="MRC", help="occupancy mask (particle id per voxel), if you have one")
    tr.add_argument(
        "--radius",
        type=float,
        help="ball radius (voxels) without --occupancy (default: the copick object's radius with --copick, else 5)",
    )
    c = tr.add_argument_group("a run of a copick project instead of --tomogram/--picks")
    c.add_argument("--copick", metavar="PROJECT", help="copick project folder or copick_config.json")
    c.add_argument("--run", help="the run (with --copick)")
    c.add_argument("--tomo-type", help="tomogram type (default: the run's only one)")
    c.add_argument("--voxel-spacing", type=float, help="voxel spacing in A (default: the run's only one)")
    c.add_argument("--user", help="picks of this copick user (default: the only user with picks)")
    c.add_argument("--session", help="picks of this copick session (default: the only one)")
    tr.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="writes particles.csv, occupancy_mask.mrc, class_mask.mrc (for fine-tuning: faket "
        "picker train --init) and, with --copick, tomogram.mrc",
    )
    tr.add_argument("--quiet", "-q", action="store_true")
    tr.set_defaults(_picker_run=_truth)

    sc = sub.add_parser(
        "score",
        help="faket evaluate's scores, and zero scores when a picker made no picks",
        description="Score picks as `faket evaluate` does (SHREC 2021 rules, the same metrics "
        "JSON and confusion CSV beside it), picks in voxels of the occupancy mask. A picker that "
        "found nothing is a result, not an error: an empty picks table scores zero precision, "
        "recall and F1 (n_picks 0).",
    )
    sc.add_argument("--truth", required=True, metavar="TABLE")
    sc.add_argument("--occupancy", required=True, metavar="MRC")
    sc.add_argument("--pred", required=True, metavar="PICKS.csv")
    sc.add_argument("-o", "--output", required=True, metavar="JSON")
    sc.add_argument("--exclude-class", action="append", default=[], metavar="NAME")
    sc.add_argument("--clip", action="store_true")
    sc.add_argument("--quiet", "-q", action="store_true")
    sc.set_defaults(_picker_run=_score)

    sm = sub.add_parser(
        "summarize",
        help="benchmark table, CSV and figure from faket evaluate metrics",
        description="Collect faket evaluate metrics of the benchmark runs into scores.csv (one "
        "row per modality, seed and test tomogram), a Markdown table (means +- std over seeds) "
        "and a PNG figure (F1 per modality with error bars).",
    )
    sm.add_argument(
        "--metrics",
        nargs=4,
        action="append",
        default=[],
        required=True,
        metavar=("MODALITY", "SEED", "TEST", "JSON"),
        help="one run's metrics (repeat)",
    )
    sm.add_argument("-o", "--output", required=True, metavar="scores.csv")
    sm.add_argument("--table", metavar="MD", help="Markdown table (default: beside, .md)")
    sm.add_argument("--figure", metavar="PNG", help="figure (default: beside, .png)")
    sm.add_argument("--title", default="faket picker benchmark")
    sm.add_argument("--note", default="", help="a line printed under the table (configuration)")
    sm.add_argument(
        "--comparisons",
        metavar="CSV",
        help="paired comparisons with bootstrap intervals (default: beside, <name>_comparisons.csv)",
    )
    sm.add_argument(
        "--comparisons-figure", metavar="PNG", help="their figure (default: beside the comparisons CSV, .png)"
    )
    sm.add_argument(
        "--bootstrap-samples",
        type=int,
        default=N_BOOT,
        help=f"bootstrap resamples of the paired units (default {N_BOOT})",
    )
    sm.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    sm.add_argument(
        "--shifted",
        action="store_true",
        help="the test domain differs from the training domain: BENCHMARK is labelled "
        "BENCHMARK-MISMATCHED and the paper's BENCHMARK row goes beside PHYSICS-MATCHED",
    )
    sm.add_argument(
        "--faket-weights",
        default="imagenet",
        help="VGG weights FAKET was styled with (style.weights): random -> the FAKET row is compared "
        "with the paper's random-weights ablation; imagenet or a weights file -> with its FAKET row",
    )
    sm.add_argument("--quiet", "-q", action="store_true")
    sm.set_defaults(_picker_run=_summarize)


def run(args) -> int:
    fn = getattr(args, "_picker_run", None)
    if fn is None:
        raise InputError(
            "a command is needed: train, segment, localize, truth, score or summarize (faket picker --help)"
        )
    # the picker extra, checked where it is used (importing MONAI costs seconds: score, truth and summarize
    # run once per benchmark job and need neither)
    need = {"train": ("monai",), "segment": ("monai",), "localize": ("sklearn",)}.get(args.picker_command, ())
    for mod in need:
        try:
            __import__(mod)
        except ImportError as exc:
            raise InputError(
                f"the picker needs the 'picker' extra (pip install 'faket[picker]'): {exc.name} is not installed"
            ) from None
    return fn(args)


# --------------------------------------------------------------------------------------------------


def _check_positive(name, v, *, zero=False):
    if v is None:
        return
    if v < 0 or (v == 0 and not zero):
        raise InputError(f"{name} {v:g}: must be {'non-negative' if zero else 'positive'}")


def _train_inputs(args):
    """[(tomogram path, class mask path, particles path | None)]"""
    if args.dataset:
        if args.tomogram or args.class_mask:
            raise InputError("give either --dataset or --tomogram/--class-mask pairs, not both")
        p = Path(args.dataset)
        if not p.is_file():
            raise InputError(f"{p}: dataset CSV not found")
        with open(p, newline="") as f:
            rows = list(csv.DictReader(f))
        need = set(DATASET_TRAINING_COLUMNS)
        if not rows or not need <= set(rows[0]):
            raise InputError(f"{p}: not a faket dataset CSV (needs columns {', '.join(sorted(need))})")
        names = set(args.tomograms.split(",")) if args.tomograms else None
        sel = [
            r
            for r in rows
            if (args.modality is None or r["modality"] == args.modality)
            and (args.bin is None or int(r["bin"]) == args.bin)
            and (names is None or r["tomogram"] in names)
        ]
        if not sel:
            raise InputError(
                f"{p}: no rows with modality={args.modality} bin={args.bin}"
                + (f" tomograms={args.tomograms}" if names else "")
            )
        mods = {(r["modality"], r["bin"]) for r in sel}
        if len(mods) > 1:
            raise InputError(f"{p}: rows of several modalities/binnings {sorted(mods)}; pass --modality and --bin")
        base = p.resolve().parent
        return [(base / r["tomogram_path"], base / r["class_mask"], base / r["particles_csv"]) for r in sel]
    if not args.tomogram:
        raise InputError("no training data: pass --tomogram/--class-mask pairs or --dataset")
    if len(args.class_mask) != len(args.tomogram):
        raise InputError(
            f"{len(args.tomogram)} --tomogram but {len(args.class_mask)} --class-mask; give one class mask per tomogram"
        )
    if args.particles and len(args.particles) != len(args.tomogram):
        raise InputError(f"{len(args.tomogram)} --tomogram but {len(args.particles)} --particles")
    parts = args.particles or [None] * len(args.tomogram)
    return list(zip(args.tomogram, args.class_mask, parts))


def _train(args) -> int:
    # lazy: numpy, pandas, torch (faket start-up)
    import numpy as np

    # lazy: numpy, pandas, torch (faket's start-up imports every command module)
    import torch

    from faket.formats.mrc import read_volume
    from faket.formats.particles import read_particles
    from faket.picker.data import TrainingItem, training_set
    from faket.picker.io import load_model, save_model
    from faket.picker.train import resolve_precision, train_picker

    set_threads(args.threads)
    for name in ("steps", "batch", "patch", "lr"):
        _check_positive(f"--{name}", getattr(args, name))
    _check_positive("--shift", args.shift, zero=True)
    _check_positive("--background-ratio", args.background_ratio, zero=True)
    if args.patch % 4:
        raise InputError(f"--patch {args.patch}: must be a multiple of 4 (the U-Net pools twice)")
    if not 0 <= args.p_rotate <= 1:
        raise InputError(f"--p-rotate {args.p_rotate:g}: must lie in [0, 1]")
    out = Path(args.output)
    loss_csv = Path(args.loss_csv) if args.loss_csv else out.with_name(out.stem + "_loss.csv")
    items = _train_inputs(args)
    check_not_same([x for it in items for x in it] + [args.init], [out, loss_csv])
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    init_model, init = load_model(args.init) if args.init else (None, None)

    data = []
    for tp, mp, pp in items:
        v = read_volume(tp, what="tomogram")
        m = read_volume(mp, what="class mask")
        data.append(
            TrainingItem(
                v.data,
                m.data,
                v.voxel_size_a,
                read_particles(pp) if pp is not None else None,
                str(tp),
                str(mp),
                str(pp),
            )
        )
    ts = training_set(data, patch=args.patch, init=init)
    del data

    info(
        args,
        f"training on {len(ts.volumes)} tomogram(s), {ts.n_out - 1} classes + background, {args.steps} "
        f"steps of {args.batch} patches of {args.patch}^3 on {device} in {precision}"
        + (f", continuing from {args.init} (fresh optimiser state)" if args.init else ""),
    )
    bar = progress(total=args.steps, args=args, desc="picker train", unit="step")

    def cb(step, loss):
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*padding='same'.*")
        res = train_picker(
            ts.volumes,
            ts.masks,
            ts.n_out,
            steps=args.steps,
            batch=args.batch,
            patch=args.patch,
            lr=args.lr,
            shift=args.shift,
            p_rotate=args.p_rotate,
            background_ratio=args.background_ratio,
            seed=args.seed,
            loss=args.loss,
            precision=precision,
            device=device,
            model=init_model,
            callback=cb,
        )
    bar.close()
    params = {
        k: getattr(args, k)
        for k in ("steps", "batch", "patch", "lr", "shift", "p_rotate", "background_ratio", "loss", "seed")
    }
    params["precision"] = res.precision
    if args.init:
        params["init"] = {
            "path": str(args.init),
            "optimizer": "fresh",
            "params": init.get("params"),
            "steps_before": len(init.get("losses") or []),
        }
    with Step("picker train", args, inputs=[x for it in items for x in it] + [args.init]) as st:
        save_model(
            st.path(out),
            res.model.cpu(),
            class_names=ts.class_names,
            class_sizes=ts.class_sizes,
            patch=args.patch,
            params=params,
            losses=res.losses,
            voxel_size_a=ts.voxel_size_a,
        )
        st.path(loss_csv).write_text("step,loss\n" + "".join(f"{i},{v:.6g}\n" for i, v in enumerate(res.losses)))
        st.write_sidecar(
            out.with_suffix(".json"),
            extra={
                "output": {
                    "path": str(out),
                    "n_out": ts.n_out,
                    "class_names": ts.class_names,
                    "class_sizes_voxels": ts.class_sizes,
                    "voxel_size_a": ts.voxel_size_a,
                },
                "training": {
                    "seconds": res.seconds,
                    "cpu_seconds": res.cpu_seconds,
                    "loss_first": res.losses[0],
                    "loss_last": res.losses[-1],
                    "loss_last10_mean": float(np.mean(res.losses[-10:])),
                    "device": str(device),
                    "precision": res.precision,
                    "precision_asked": args.precision,
                    "torch_threads": torch.get_num_threads(),
                    "init": str(args.init) if args.init else None,
                    "class_ids_mapped_onto_the_model": {k: v for k, v in ts.remapped.items() if v},
                },
            },
        )
    info(
        args,
        f"loss {res.losses[0]:.4f} -> {np.mean(res.losses[-10:]):.4f} (mean of the last 10 steps) in "
        f"{res.seconds:.0f} s -> {out}",
    )
    return 0


def _segment(args) -> int:
    # lazy: numpy, torch (faket start-up)
    import numpy as np

    # lazy: numpy, pandas, torch (faket's start-up imports every command module)
    from faket.formats.mrc import read_volume
    from faket.picker.data import other_sampling
    from faket.picker.io import load_model
    from faket.picker.segment import segment

    set_threads(args.threads)
    out = Path(args.output)
    scores_p = Path(args.scores) if args.scores else None
    if scores_p is not None and scores_p.suffix.lower() != ".npy":
        raise InputError(f"--scores {scores_p}: expected a .npy file name")
    check_not_same([args.tomogram, args.model], [out, scores_p])
    if not 0 <= args.overlap < 1:
        raise InputError(f"--overlap {args.overlap:g}: must lie in [0, 1)")
    _check_positive("--batch", args.batch)
    device = resolve_device(args.device)
    model, meta = load_model(args.model, device)
    patch = args.patch or int(meta["patch"])
    if patch % 4 or patch <= 0:
        raise InputError(f"--patch {patch}: must be a positive multiple of 4")
    v = read_volume(args.tomogram, what="tomogram")
    trained = meta.get("voxel_size_a")
    if other_sampling(v.voxel_size_a, trained) and not args.any_voxel_size:
        raise InputError(
            f"{args.tomogram}: voxel size {v.voxel_size_a:g} A, but the picker was trained at "
            f"{trained:g} A; bin or resample the tomogram (or pass --any-voxel-size)"
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*padding='same'.*")
        labels, scores = segment(
            model,
            v.data,
            patch=patch,
            overlap=args.overlap,
            batch=args.batch,
            device=device,
            progress=show_progress(args),
        )
    with Step("picker segment", args, inputs=[args.tomogram, args.model]) as st:
        counts = {int(c): int(n) for c, n in zip(*np.unique(labels, return_counts=True))}
        st.write_mrc(
            out,
            labels,
            v.voxel_size_a,
            params={"patch": patch},
            extra={"class_voxels": counts, "class_names": meta["class_names"], "class_sizes": meta["class_sizes"]},
        )  # read by localize without --model
        if scores_p is not None:
            with open(st.path(scores_p), "wb") as f:
                np.save(f, scores.astype(np.float16))
    info(
        args,
        f"{out}: {sum(n for c, n in counts.items() if c)} foreground voxels in {len([c for c in counts if c])} classes",
    )
    return 0


def _parse_min_sizes(specs, names):
    glob, per = None, {}
    by_name = {v.lower(): k for k, v in names.items()}
    for s in specs:
        key, _, val = s.rpartition("=")
        try:
            n = int(val)
            assert n >= 0
        except (ValueError, AssertionError):
            raise InputError(f"--min-size {s}: expected N or CLASS=N with N a non-negative integer") from None
        if not key:
            glob = n
        elif key.isdigit():
            per[int(key)] = n
        elif key.lower() in by_name:
            per[by_name[key.lower()]] = n
        else:
            raise InputError(f"--min-size {s}: unknown class {key!r} (known: {', '.join(names.values()) or 'none'})")
    return glob, per


def _class_table(path):
    """``{class_id: entry}`` of a class table (``classes.json``: ``{"1": {"name", "kind", "diameter_nm"}}``)
    or of a JSON sidecar holding one (``classes``; ``layout.classes`` as faket layout writes;
    ``class_names`` and ``class_sizes`` as faket picker segment writes); ``None`` for other JSON."""

    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON class table ({exc})") from None
    if isinstance(d, dict) and isinstance(d.get("class_names"), dict):  # faket picker segment's sidecar
        sizes = d.get("class_sizes") if isinstance(d.get("class_sizes"), dict) else {}
        d = {k: {"name": str(v), "size_voxels": sizes.get(k)} for k, v in d["class_names"].items()}
    elif isinstance(d, dict) and isinstance(d.get("classes"), dict):
        d = d["classes"]
    elif isinstance(d, dict) and isinstance(d.get("layout"), dict) and isinstance(d["layout"].get("classes"), dict):
        d = d["layout"]["classes"]
    elif not (isinstance(d, dict) and all(isinstance(v, dict) and "name" in v for v in d.values())):
        return None
    out = {}
    for k, v in d.items():
        try:
            out[int(k)] = v if isinstance(v, dict) else {"name": str(v)}
        except (TypeError, ValueError):
            raise InputError(f"{path}: class id {k!r} is not an integer") from None
    return out


def _find_class_table(labels):
    """The class table that travels with a class map: ``classes.json`` beside it, else its JSON sidecar."""
    p = Path(labels)
    for c in (p.parent / "classes.json", p.with_suffix(".json")):
        if c.is_file():
            t = _class_table(c)
            if t:
                return t, c
    return None, None


def _localize(args) -> int:
    # lazy: numpy, pandas (faket start-up)
    import numpy as np

    # lazy: numpy, pandas (faket's start-up imports every command module)
    from faket.formats.mrc import read_volume
    from faket.formats.particles import read_particles
    from faket.formats.table import check_particles
    from faket.picker.localize import DEFAULT_BANDWIDTH_A, EXTENT_TOLERANCE, NOT_PARTICLES, class_bandwidths, localize

    out = Path(args.output)
    if out.suffix.lower() != ".csv":
        raise InputError(f"--output {out}: expected a .csv file name")
    check_not_same([args.labels, args.model, args.classes, args.scores], [out])
    if args.bandwidth is not None:
        _check_positive("--bandwidth", args.bandwidth)
    if args.bandwidth_a is not None:
        _check_positive("--bandwidth-a", args.bandwidth_a)
    _check_positive("--min-size-fraction", args.min_size_fraction, zero=True)
    names, sizes, table, table_from = {}, {}, None, None
    if args.classes and args.classes.lower().endswith(".json"):
        table, table_from = _class_table(Path(args.classes)), Path(args.classes)
        if not table:
            raise InputError(f"{args.classes}: no class table in it (expected classes.json as faket layout writes)")
    lab_m = read_volume(args.labels, what="class map")
    if table is None:
        table, table_from = _find_class_table(args.labels)
    if table:
        names.update({c: str(v["name"]) for c, v in table.items() if v.get("name")})
        sizes.update({c: float(v["size_voxels"]) for c, v in table.items() if v.get("size_voxels")})
    if args.classes and not args.classes.lower().endswith(".json"):
        df = read_particles(args.classes)
        names.update({int(c): str(n) for c, n in zip(df["class_id"], df["class_name"])})
    if args.model:
        # lazy: torch (faket start-up)
        from faket.picker.io import load_model

        _, meta = load_model(args.model)
        names.update(dict(meta["class_names"]))
        sizes.update(dict(meta["class_sizes"]))
    lab = lab_m.data
    if (lab < 0).any() or (lab != np.round(lab)).any():
        raise InputError(f"{args.labels}: a class map holds non-negative integer class ids")
    lab = lab.astype(np.int64)
    scores = None
    if args.scores:
        try:
            scores = np.load(args.scores, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise InputError(f"{args.scores}: not a readable .npy file ({exc})") from None
        if scores.ndim != 4 or scores.shape[1:] != lab.shape or scores.shape[0] <= lab.max():
            raise InputError(f"{args.scores}: scores of shape {scores.shape} do not fit the class map {lab.shape}")
    vs = lab_m.voxel_size_a
    if args.copick:
        # lazy: numpy, pandas (faket start-up)
        from faket.picker.copick import check_pick_classes

        if not vs:
            raise InputError(f"{args.labels}: no voxel size in the header; copick picks are in Angstrom")
        check_pick_classes(args.copick, [names.get(int(c), f"class{int(c)}") for c in np.unique(lab) if c > 0])
    glob, per = _parse_min_sizes(args.min_size, names)
    classes = set(int(c) for c in np.unique(lab) if c > 0) | set(names) | set(sizes)
    min_size = {}
    for c in classes:
        if c in per:
            min_size[c] = per[c]
        elif glob is not None:
            min_size[c] = glob
        elif c in sizes:
            min_size[c] = max(1, int(round(args.min_size_fraction * sizes[c])))
        else:
            min_size[c] = 1
    _check_positive("--max-points", args.max_points)
    skip = sorted(c for c, v in (table or {}).items() if v.get("kind") in NOT_PARTICLES)
    diam = {c: float(v["diameter_nm"]) for c, v in (table or {}).items() if v.get("diameter_nm")} if vs else {}
    if args.bandwidth_a is not None and not vs:
        raise InputError(f"{args.labels}: no voxel size in the header; --bandwidth-a needs it (or give --bandwidth)")
    if args.bandwidth is not None or args.bandwidth_a is not None:
        bw = args.bandwidth if args.bandwidth is not None else args.bandwidth_a / vs
        mode = {"bandwidth_voxels": bw, "rule": "one bandwidth (DeepFinder)"}
        df = localize(
            lab,
            bandwidth=bw,
            min_size=min_size,
            per_class=args.per_class,
            class_names=names,
            scores=scores,
            max_points=args.max_points,
            skip_classes=skip,
        )
    else:
        bws = class_bandwidths(vs, diameters_nm=diam, sizes_voxels=sizes)
        default = DEFAULT_BANDWIDTH_A / vs if vs else 5.0
        ext = {c: EXTENT_TOLERANCE * d * 10.0 / vs + 0.5 for c, d in diam.items()}
        mode = {
            "bandwidth_voxels": {str(c): b for c, b in sorted(bws.items())},
            "default_bandwidth_voxels": default,
            "max_extent_voxels": {str(c): e for c, e in sorted(ext.items())},
            "rule": "per class: bandwidth from the class size; split clusters longer (max_extent) or larger "
            "(1.5 x the particle size) than one particle; centres snapped onto their cluster",
        }
        df = localize(
            lab,
            bandwidth=bws,
            default_bandwidth=default,
            min_size=min_size,
            class_names=names,
            scores=scores,
            max_points=args.max_points,
            max_extent=ext,
            particle_size={c: s for c, s in sizes.items() if c not in ext},
            snap=True,
            skip_classes=skip,
        )
    with Step("picker localize", args, inputs=[args.labels, args.model, args.classes, args.scores, table_from]) as st:
        table_out = check_particles(df, str(out))
        for c in df.columns:
            if c not in table_out.columns:
                table_out[c] = df[c].to_numpy()
        table_out.to_csv(st.path(out), index=False)
        st.write_sidecar(
            out.with_suffix(".json"),
            extra={
                "output": {
                    "path": str(out),
                    "n_picks": len(df),
                    "min_size_voxels": min_size,
                    **mode,
                    "skipped_classes": skip,
                    "classes_from": str(table_from) if table_from else None,
                    "picks_per_class": {str(k): int(v) for k, v in df["class_name"].value_counts().items()},
                }
            },
        )
    if args.copick:
        # lazy: numpy, pandas (faket start-up)
        from faket.picker.copick import DEFAULT_PICKER_USER, write_picks

        run = args.run or Path(args.labels).name.split(".")[0]
        n = write_picks(
            args.copick, run, df, vs, user_id=args.user_id or DEFAULT_PICKER_USER, session_id=args.session_id
        )
        info(args, f"{args.copick}: run {run}: {sum(n.values())} picks in {len(n)} object(s)")
    info(args, f"{out}: {len(df)} picks")
    return 0


def _truth(args) -> int:
    # lazy: numpy, pandas (faket start-up)
    import numpy as np

    # lazy: numpy, pandas (faket's start-up imports every command module)
    from faket.formats.mrc import read_volume
    from faket.formats.particles import read_particles, write_particles_csv
    from faket.formats.table import check_particles
    from faket.picker.benchmark import DEFAULT_RADIUS, class_mask_from_occupancy, occupancy_from_picks

    outdir = Path(args.output)
    tomo = None
    if args.copick:
        # lazy: numpy, pandas (faket start-up)
        from faket.picker.copick import config_path, object_radii, read_tomogram, read_truth

        if args.tomogram or args.picks:
            raise InputError("give either --copick (with --run) or --tomogram and --picks, not both")
        if not args.run:
            raise InputError(f"--copick {args.copick}: --run is needed (the run to read)")
        tomo, voxel = read_tomogram(args.copick, args.run, args.tomo_type, args.voxel_spacing)
        shape = tomo.shape
        df = read_truth(args.copick, args.run, voxel, user=args.user, session=args.session)
        source, inputs = f"copick {args.copick} run {args.run}", [config_path(args.copick)]
    else:
        if not (args.tomogram and args.picks):
            raise InputError("--tomogram and --picks are needed (or --copick PROJECT --run RUN)")
        t = read_volume(args.tomogram, what="tomogram")
        shape, voxel = t.data.shape, t.voxel_size_a
        df = read_particles(args.picks, voxel_size_a=voxel, box_zyx=shape)
        source, inputs = args.picks, [args.tomogram, args.picks, args.occupancy]
    if len(df) == 0:
        raise InputError(f"{source}: no annotated particles")
    zyx = df[["z", "y", "x"]].to_numpy()
    inside = np.all((zyx > -0.5) & (zyx < np.asarray(shape) - 0.5), axis=1)
    if not inside.any():
        raise InputError(f"{source}: no pick lies inside the tomogram {shape} (voxels expected)")
    df = df[inside].reset_index(drop=True)
    radius = None
    if args.occupancy:
        occ_m = read_volume(args.occupancy, what="occupancy mask")
        if occ_m.data.shape != shape:
            raise InputError(f"{args.occupancy}: shape {occ_m.data.shape} differs from the tomogram {shape}")
        occ = occ_m.data.astype(np.int32)
    else:
        if args.radius is not None:
            _check_positive("--radius", args.radius)
            radius = np.full(len(df), args.radius)
        else:
            radii = object_radii(args.copick) if args.copick else {}
            radius = np.array([radii[n] / voxel if n in radii else DEFAULT_RADIUS for n in df["class_name"]])
        df["particle_id"] = np.arange(1, len(df) + 1)
        occ = occupancy_from_picks(shape, df[["z", "y", "x"]].to_numpy(), radius)
    table = check_particles(df)
    cls = class_mask_from_occupancy(occ, table["particle_id"], table["class_id"])
    with Step("picker truth", args, inputs=inputs) as st:
        write_particles_csv(table, st.path(outdir / "particles.csv"))
        radii_used = None if radius is None else {str(n): float(r) for n, r in zip(df["class_name"], radius)}
        st.write_mrc(outdir / "occupancy_mask.mrc", occ.astype(np.float32), voxel, params={"radius": radii_used})
        st.write_mrc(
            outdir / "class_mask.mrc",
            cls.astype(np.float32),
            voxel,
            extra={"class_names": {int(c): str(n) for c, n in zip(table["class_id"], table["class_name"])}},
        )
        if tomo is not None:
            st.write_mrc(outdir / "tomogram.mrc", tomo, voxel, params={"copick": str(args.copick), "run": args.run})
    info(args, f"{outdir}: {len(df)} particles ({int((~inside).sum())} outside the tomogram dropped)")
    return 0


def _summarize(args) -> int:
    # lazy: numpy, pandas (faket's start-up imports every command module)
    from faket.picker.benchmark import comparison_figure, comparisons, figure, markdown_table, score_rows, summary
    from faket.picker.stats import compare

    out = Path(args.output)
    table = Path(args.table) if args.table else out.with_suffix(".md")
    fig = Path(args.figure) if args.figure else out.with_suffix(".png")
    comp_p = Path(args.comparisons) if args.comparisons else out.with_name(out.stem + "_comparisons.csv")
    comp_fig = Path(args.comparisons_figure) if args.comparisons_figure else comp_p.with_suffix(".png")
    _check_positive("--bootstrap-samples", args.bootstrap_samples)
    runs = []
    for mod, seed, test, path in args.metrics:
        try:
            with open(path) as f:
                runs.append((mod, seed, test, json.load(f)))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable metrics JSON ({exc})") from None
    rows = score_rows(runs)
    summ = summary(rows)
    comp = compare(rows, comparisons(list(summ["modality"])), n_boot=args.bootstrap_samples, seed=args.bootstrap_seed)
    md = markdown_table(
        summ, title=args.title, note=args.note, faket_weights=args.faket_weights, shifted=args.shifted, comparisons=comp
    )
    with Step("picker summarize", args, inputs=[m[3] for m in args.metrics]) as st:
        rows.to_csv(st.path(out), index=False)
        st.path(table).write_text(md)
        figure(summ, st.path(fig), title=args.title, faket_weights=args.faket_weights, shifted=args.shifted)
        comp.to_csv(st.path(comp_p), index=False)
        comparison_figure(comp, st.path(comp_fig), title=args.title, shifted=args.shifted)
        st.write_sidecar(
            out.with_suffix(".json"),
            extra={
                "output": {
                    "path": str(out),
                    "runs": len(rows),
                    "comparisons": str(comp_p),
                    "separated": [
                        f"{a} - {b} ({m})"
                        for a, b, m, sep in zip(comp["a"], comp["b"], comp["metric"], comp["separated"])
                        if sep
                    ],
                }
            },
        )
    info(args, f"{out}, {table}, {fig}, {comp_p}, {comp_fig}")
    if not args.quiet:
        print(md)
    return 0


def _score(args) -> int:
    # lazy: numpy, pandas (faket's start-up imports every command module)
    from faket.formats.mrc import read_volume
    from faket.formats.particles import read_particles, read_picks
    from faket.picker.score import score_picks
    from faket.provenance import build_record, write_json

    pred, out = Path(args.pred), Path(args.output)
    if out.suffix.lower() != ".json":
        raise InputError(f"--output {out}: expected a .json file name")
    conf = out.with_name(out.stem + "_confusion.csv")
    check_not_same([args.truth, args.occupancy, args.pred], [out, conf])
    if not pred.is_file():
        raise InputError(f"{pred}: picks file not found")
    occ = read_volume(args.occupancy, what="occupancy mask")
    truth = read_particles(args.truth, voxel_size_a=occ.voxel_size_a, box_zyx=occ.data.shape)
    if len(truth) == 0:
        raise InputError(f"{args.truth}: truth table has no particles")
    picks = read_picks(pred, voxel_size_a=occ.voxel_size_a, box_zyx=occ.data.shape)
    try:
        body, ev = score_picks(
            occ.data, truth, picks, exclude_classes=args.exclude_class, clip=args.clip, source=str(pred)
        )
    except InputError as exc:
        if str(exc).startswith(str(pred)):
            raise
        raise InputError(f"{args.occupancy}: {exc}") from None
    with Step("picker score", args, inputs=[args.truth, args.occupancy, args.pred]) as st:
        body["confusion_csv"] = str(conf) if ev.confusion is not None else None
        body["provenance"] = build_record(
            step="picker score", parameters=st.params(), inputs=st.inputs, seed=None, started=st.t0
        )
        write_json(st.path(out), body)
        if ev.confusion is not None:
            st.path(conf).write_text(ev.confusion_csv())
    loc = ev.localisation
    info(
        args,
        f"{pred}: {loc['n_picks']} picks; localisation F1 {loc['f1']:.3f}"
        + (f", classification macro F1 {ev.classification['macro_f1']:.3f}" if ev.classification else ""),
    )
    return 0
