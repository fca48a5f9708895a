"""``faket style``: neural style transfer of a tilt-series (FakET), batched, angle-matched, CPU and GPU."""

from __future__ import annotations

import functools
import textwrap
import time

from faket.cli._common import Step, add_common_args, check_not_same, info, progress, resolve_device, set_threads, warn
from faket.cli._reference import add_reference_args
from faket.errors import InputError, ParameterError
from faket.style import settings as ss
from faket.style.settings import ALGORITHM_KEYS, FEATURE_TRANSFORMS, NETWORKS, OFFLINE_NOTE, PRESET_NAMES, PRESETS

PAPER, OFFLINE = PRESETS["paper"], PRESETS["offline"]


def _v(v) -> str:
    """A setting as typed on the command line (tuples comma-separated)."""
    return ",".join(f"{x:g}" for x in v) if isinstance(v, tuple) else f"{v:g}"


HELP = "neural style transfer of tilt-series towards a real reference (FakET), batched and angle-matched"
_PRESETS_TEXT = textwrap.fill(
    f"Presets: `paper` = one scale at the tilt size, one Adam step of {_v(PAPER.step_size)}, EMA "
    f"{_v(PAPER.avg_decay)}, style layers {_v(PAPER.style_layers)} ({_v(PAPER.style_layer_weights)}), content "
    f"layer {_v(PAPER.content_layers)}, content weight {_v(PAPER.content_weight)}, TV {_v(PAPER.tv_weight)}, "
    f"{PAPER.pooling} pooling (FakET's setting, meant for ImageNet weights). `offline` = the setting chosen for "
    f"random VGG weights (no ImageNet weights available): {OFFLINE.iterations} Adam steps of "
    f"{_v(OFFLINE.step_size)} without content loss (the content enters through the NOISY init): small, because on "
    "held-out real tilts no random-weight setting came closer to real data than NOISY itself (offline, the "
    "realism comes from the noise model); see docs/style.md. `auto` (default) = paper with ImageNet/file weights, offline with "
    "--weights random. Any option given explicitly overrides the preset.",
    106,
)
DESCRIPTION = f"""\
Style a CONTENT tilt-series towards the look of a real reference (FakET's neural style transfer).

  faket style CONTENT.mrc --style REF.mrc --init NOISY.mrc -o STYLED.mrc
  faket style CONTENT.mrc --style A.mrc --style B.mrc --style-weight 2 --style-weight 1 --init NOISY.mrc -o S.mrc
  faket style CONTENT.mrc --style REF.mrc --init NOISY.mrc --tilts 0:16 -o CHUNK0.mrc   (one chunk of a scatter)

Style tilts are matched to content tilts by angle (CONTENT.tlt, REF.tlt; a single 2-D image serves every
tilt). Each series is mapped to [0, 1] with one min/max over all its tilts; every output tilt is finally
rescaled to the matched reference tilt's mean and std. Per-tilt first/last losses go in STYLED.json.

{_PRESETS_TEXT}
"""

# a core parameter's option when it is not "--" + its name with dashes
_OPTIONS = {"weight": "--style-weight", "tilt_range": "--tilts"}
_HINTS = {"weights": " (--weights PATH.pth, --download-weights when online, or --weights random)"}


def _option_errors(run):
    """Word the core's parameter errors for this command's options (``step_size`` -> ``--step-size``)."""

    @functools.wraps(run)
    def wrapped(args):
        try:
            return run(args)
        except ParameterError as exc:
            raise exc.as_option(_OPTIONS.get(exc.param), _HINTS.get(exc.param, "")) from None

    return wrapped


def add_arguments(p) -> None:
    p.add_argument("content", metavar="CONTENT.mrc", help="content tilt-series (angles in CONTENT.tlt)")
    p.add_argument("-o", "--output", required=True, metavar="STYLED.mrc", help="output tilt-series")
    p.add_argument(
        "--style",
        action="append",
        default=[],
        required=True,
        metavar="REF.mrc",
        help="style reference: a tilt-series (angles in REF.tlt) or one 2-D image; repeat to combine",
    )
    p.add_argument(
        "--style-weight",
        action="append",
        type=float,
        default=None,
        metavar="W",
        help="weight of each --style (same order; default 1 each): Gram targets are their weighted mean",
    )
    p.add_argument("--init", metavar="NOISY.mrc", help="initial image, same shape as CONTENT (default: CONTENT)")
    p.add_argument(
        "--tilts",
        metavar="A:B",
        help="style only tilt indices [A, B) (scatter across jobs; gather with faket stack); "
        "min/max still come from all tilts",
    )
    p.add_argument(
        "--max-angle-gap",
        type=float,
        default=5.0,
        metavar="DEG",
        help="fail when a content tilt has no reference tilt within DEG degrees (default: 5)",
    )

    g = p.add_argument_group("algorithm (defaults: see --preset)")
    g.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default="auto",
        help="default settings: paper, offline (random weights), auto (default: by --weights)",
    )
    g.add_argument(
        "--iterations",
        type=int,
        help=f"Adam steps per scale (paper: {PAPER.iterations}; also sets --initial-iterations unless that is given)",
    )
    g.add_argument(
        "--initial-iterations", type=int, help=f"Adam steps at the first scale (paper: {PAPER.initial_iterations})"
    )
    g.add_argument("--min-scale", type=int, help="smallest scale, long side in pixels (default: tilt size)")
    g.add_argument("--end-scale", type=int, help="largest scale, long side in pixels (default: tilt size)")
    g.add_argument(
        "--step-size", type=float, help=f"Adam learning rate on [0, 1] pixels (paper: {_v(PAPER.step_size)})"
    )
    g.add_argument("--avg-decay", type=float, help=f"EMA decay of the output average (paper: {_v(PAPER.avg_decay)})")
    g.add_argument("--content-weight", type=float, help=f"content loss weight (paper: {_v(PAPER.content_weight)})")
    g.add_argument("--style-layers", help=f"VGG-19 features indices (paper: {_v(PAPER.style_layers)})")
    g.add_argument(
        "--style-layer-weights",
        help=f"weights of the style layers, normalised (paper: {_v(PAPER.style_layer_weights)})",
    )
    g.add_argument("--content-layers", help=f"VGG-19 features indices (paper: {_v(PAPER.content_layers)})")
    g.add_argument(
        "--content-layer-weights",
        help=f"weights of the content layers, normalised (paper: {_v(PAPER.content_layer_weights)})",
    )
    g.add_argument("--tv-weight", type=float, help=f"total-variation weight (paper: {_v(PAPER.tv_weight)})")
    g.add_argument("--pooling", choices=("max", "avg"), help=f"VGG pooling (paper: {PAPER.pooling})")
    r = p.add_argument_group(
        'random-weight variants (docs/style.md, "Offline (random weights)"; all off in the paper preset)'
    )
    r.add_argument(
        "--layer-norm",
        dest="layer_norm",
        action="store_true",
        default=None,
        help="divide each layer's style loss by its target Gram's magnitude (He et al. 2016)",
    )
    r.add_argument(
        "--no-layer-norm",
        dest="layer_norm",
        action="store_false",
        default=None,
        help="the paper's style loss (default)",
    )
    r.add_argument(
        "--feature-transform",
        choices=FEATURE_TRANSFORMS,
        help="softmax: spatial softmax of each channel's activations before the Gram matrix (SWAG, "
        f"Wang et al. 2021) (paper: {PAPER.feature_transform})",
    )
    r.add_argument(
        "--softmax-temperature",
        type=float,
        metavar="T",
        help=f"temperature of --feature-transform softmax (default: {_v(PAPER.softmax_temperature)})",
    )
    r.add_argument(
        "--network",
        choices=NETWORKS,
        help="multiscale: one layer of seeded random filters of several sizes instead of VGG-19 "
        f"(Ustyuzhaninov et al. 2017; random weights only) (paper: {PAPER.network})",
    )
    r.add_argument(
        "--multiscale-sizes",
        metavar="K,K,...",
        help=f"filter sizes of --network multiscale, odd (default: {_v(PAPER.multiscale_sizes)})",
    )
    r.add_argument(
        "--multiscale-maps",
        type=int,
        metavar="N",
        help=f"random filters per size of --network multiscale (default: {PAPER.multiscale_maps})",
    )

    w = p.add_argument_group("model and speed")
    w.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet (torch hub cache, TORCH_HOME), random (seeded) or PATH.pth "
        "(torchvision-format state dict) (default: imagenet)",
    )
    w.add_argument(
        "--download-weights",
        action="store_true",
        help="download the ImageNet weights into the torch hub cache when missing (needs network)",
    )
    w.add_argument(
        "--precision",
        choices=("fp32", "bf16", "tf32"),
        default=PAPER.precision,
        help="fp32 (default, deterministic), bf16 autocast (CPU AMX / CUDA; Gram, losses and Adam "
        "stay fp32), tf32 (CUDA)",
    )
    w.add_argument(
        "--tilt-batch",
        type=int,
        default=None,
        metavar="N",
        help="tilts per forward/backward (default on the CPU: fp32 4 up to 128^2, fewer above, "
        "1 from 256^2; bf16 1; "
        "on CUDA: from free memory; "
        "never more than fits in half the free memory)",
    )
    w.add_argument(
        "--style-cache",
        metavar="DIR",
        help="cache Gram targets of reference tilts here (keyed by reference checksum, settings, weights)",
    )
    w.add_argument(
        "--max-tile",
        type=int,
        default=None,
        metavar="PX",
        help="process tilts larger than PX x PX in tiles (default: none on CUDA, 2048 on the CPU)",
    )
    w.add_argument(
        "--tile-halo",
        type=int,
        default=None,
        metavar="PX",
        help="context around each tile's core (default: twice the receptive-field radius of the "
        "deepest layer, 160 for relu5_1: exact gradients)",
    )
    w.add_argument(
        "--final-loss",
        action="store_true",
        default=PAPER.final_loss,
        help="record the loss of the output in the sidecar (one more forward per tilt; default: the "
        "last iterate's loss, computed anyway)",
    )
    w.add_argument(
        "--no-final-loss",
        dest="final_loss",
        action="store_false",
        help="the default (kept for scripts written when the final loss was on by default)",
    )
    w.add_argument(
        "--cudnn-benchmark", action="store_true", help="let cuDNN pick the fastest (non-deterministic) algorithms"
    )
    p.add_argument(
        "--match",
        choices=("meanstd", "distribution"),
        default="meanstd",
        help="meanstd: every output tilt gets the matched reference tilt's mean and std (default); "
        "distribution: its intensities are mapped onto the matched reference tilt's distribution "
        "(redistributor; several --style are pooled); see docs/noise.md",
    )
    add_reference_args(p, "style")
    add_common_args(p, seed=True, device=True, threads=True)


def resolve_settings(args, weights_kind: str):
    """StyleSettings from the preset and explicit options, and the preset's name (faket.style.settings.resolve)."""
    given = {k: getattr(args, k, None) for k in ALGORITHM_KEYS}
    for k in ("style_layers", "content_layers", "multiscale_sizes"):
        if given.get(k) is not None:
            given[k] = ss.parse_int_list(given[k], "--" + k.replace("_", "-"))
    for k in ("style_layer_weights", "content_layer_weights"):
        if given[k] is not None:
            given[k] = ss.parse_float_list(given[k], "--" + k.replace("_", "-"))
    return ss.resolve(
        args.preset,
        weights_kind,
        given,
        precision=args.precision,
        max_tile=args.max_tile,
        tile_halo=args.tile_halo,
        final_loss=args.final_loss,
    )


@_option_errors
def run(args) -> int:
    # lazy: numpy, torch (faket's start-up imports every command module)
    import numpy as np
    import torch

    from faket import style as st
    from faket.cli._reference import content_pixel_size
    from faket.formats.tiltmeta import read_tiltseries
    from faket.imaging.reference import ReferenceOptions, prepare_reference
    from faket.imaging.tilts import parse_tilt_chunk
    from faket.style.cache import GramCache
    from faket.style.vgg import LAYER_NAMES, build_model

    set_threads(args.threads)
    if args.tilt_batch is not None and args.tilt_batch < 1:
        raise InputError(f"--tilt-batch {args.tilt_batch}: must be at least 1")
    if args.max_angle_gap is not None and not args.max_angle_gap >= 0:
        raise InputError(f"--max-angle-gap {args.max_angle_gap:g}: must be >= 0")
    weights = args.weights
    wkind = ss.weights_kind(weights)
    settings, preset = resolve_settings(args, wkind)
    if args.style_weight is not None and len(args.style_weight) != len(args.style):
        raise InputError(
            f"--style-weight given {len(args.style_weight)} time(s) for {len(args.style)} --style; "
            "give one weight per reference"
        )
    sweights = args.style_weight or [1.0] * len(args.style)
    for w_ in sweights:
        if not (np.isfinite(w_) and w_ > 0):
            raise InputError(f"--style-weight {w_:g}: must be > 0")
    inputs = [args.content, args.init, *args.style]
    check_not_same(inputs, [args.output])
    device = resolve_device(args.device)
    st.configure_backends(device, settings.precision, deterministic=True, benchmark=args.cudnn_benchmark)

    # inputs
    c_m, c_angles = read_tiltseries(args.content, require_angles=False, allow_single=True, what="content tilt-series")
    content = c_m.data
    T = content.shape[0]
    init = None
    if args.init is not None:
        i_m, i_angles = read_tiltseries(args.init, require_angles=False, allow_single=True, what="init tilt-series")
        if i_m.data.shape != content.shape:
            raise InputError(f"{args.init}: shape {i_m.data.shape} differs from the content's {content.shape}")
        if i_angles is not None and c_angles is not None and not np.allclose(i_angles, c_angles, atol=1e-3):
            raise InputError(f"{args.init}: its .tlt angles differ from {args.content}'s")
        init = i_m.data
    a, b = parse_tilt_chunk(args.tilts, T)
    refs, ref_records = [], []
    c_px = content_pixel_size(args, c_m, args.content)
    for k, (path, wt) in enumerate(zip(args.style, sweights)):
        prep = prepare_reference(
            path,
            k,
            len(args.style),
            ReferenceOptions.from_args(args),
            kind="style",
            content_T=T,
            content_angles=c_angles,
            content_path=args.content,
            content_pixel=c_px,
            warn=warn,
            info=lambda msg: info(args, msg),
            what="style reference",
        )
        idx, gap = prep.index, prep.gap
        ref = st.Reference(prep.data, weight=float(wt), index=idx, name=str(path))  # Gram targets: resampled
        refs.append(ref)
        ref_records.append(
            {
                "path": str(path),
                "weight": float(wt),
                "n_tilts": int(prep.data.shape[0]),
                **prep.record,
                "matched_index": prep.keep[idx][a:b].tolist(),
                "angle_gap_deg": gap[a:b].tolist(),
            }
        )

    # model
    if wkind == "random":
        warn(
            "using RANDOM VGG-19 weights (--weights random): not the paper's ImageNet features; "
            f"preset {preset!r}" + (f", {settings.variant}" if settings.variant else "") + ". " + OFFLINE_NOTE
        )
    model, winfo = build_model(weights, settings, seed=args.seed, device=device, download=args.download_weights)
    info(args, f"weights: {winfo.kind}" + (f" {winfo.path}" if winfo.path else "") + f" sha256 {winfo.sha256[:12]}")
    H, W = content.shape[1:]
    settings.max_tile = ss.max_tile_for(settings.max_tile, (H, W), device.type)
    tile = ss.tile_size(settings.max_tile, (H, W))
    hw_mem = (min(H, tile), min(W, tile)) if tile else (H, W)
    fit = st.default_tilt_batch(device, hw_mem, settings.precision)
    tilt_batch = ss.tilt_batch(args.tilt_batch, fit, hw_mem, settings.precision, device.type)
    if args.tilt_batch is not None and tilt_batch > fit:
        warn(f"--tilt-batch {tilt_batch}: may not fit in memory (estimate: {fit})")
    engine = st.StyleTransfer(model, settings, device)
    cache = GramCache(args.style_cache) if args.style_cache else None
    info(
        args,
        f"styling tilts {a}:{b} of {T} ({H}x{W}) on {device}, {settings.precision}, batch {tilt_batch}, "
        f"preset {preset}, {settings.initial_iterations}/{settings.iterations} iterations",
    )
    t0 = time.perf_counter()
    nb = -(-(b - a) // tilt_batch)
    out, rec = st.stylize_series(
        engine,
        content,
        init,
        refs,
        tilt_range=(a, b),
        tilt_batch=tilt_batch,
        cache=cache,
        weights_key=winfo.key(),
        progress=lambda it: progress(it, args=args, total=nb, desc="style", unit="batch"),
    )
    elapsed = time.perf_counter() - t0
    if not np.isfinite(out).all():
        raise InputError(f"{args.content}: styling produced NaN/Inf (check the inputs and --step-size)")
    for r, rr in zip(rec["references"], ref_records):
        rr["minmax"] = r["minmax"]
    if args.match == "distribution":  # after the engine's mean/std matching: the whole distribution
        # lazy: numpy (faket's start-up imports every command module)
        from faket.imaging.noise import match_distribution

        targets = [[ref.tilts[ref.index[t] if ref.index is not None else 0] for ref in refs] for t in range(a, b)]
        out = match_distribution(out, targets, seed=args.seed, tilt_indices=range(a, b))
    angles_out = None if c_angles is None else c_angles[a:b]
    extra = {
        "style": {
            "preset": preset,
            "settings": settings.to_dict(),
            "layer_names": (
                {"style": ["multiscale"], "content": ["multiscale"] if engine.content_layers else []}
                if settings.network == "multiscale"
                else {
                    "style": [LAYER_NAMES[l] for l in settings.style_layers],
                    "content": [LAYER_NAMES[l] for l in settings.content_layers],
                }
            ),
            "variant": settings.variant,
            "weights": winfo.to_dict(),
            "device": str(device),
            "precision": settings.precision,
            "tilt_batch": tilt_batch,
            "threads": torch.get_num_threads(),
            "tilt_range": [a, b],
            "n_tilts_total": T,
            "scales": rec["scales"],
            "final_loss_of": rec["final_loss_of"],
            "content_minmax": rec["content_minmax"],
            "init_minmax": rec["init_minmax"],
            "references": ref_records,
            "per_tilt": {"index": list(range(a, b)), **rec["per_tilt"]},
            "seconds": round(elapsed, 3),
            "seconds_per_tilt": round(elapsed / (b - a), 4),
            "match": args.match,
        }
    }
    if cache is not None:
        extra["style"]["gram_cache"] = cache.record()
    if wkind == "random":
        extra["style"]["realism_note"] = OFFLINE_NOTE
    with Step("style", args, inputs=inputs) as stp:
        stp.write_mrc(args.output, out, c_m.voxel_size_a, angles=angles_out, image_stack=True, extra=extra)
    lo = np.mean(rec["per_tilt"]["loss_initial"])
    hi = np.mean(rec["per_tilt"]["loss_final"])
    info(args, f"wrote {args.output} ({b - a} tilts, {elapsed / (b - a):.3g} s/tilt; mean loss {lo:.4g} -> {hi:.4g})")
    return 0
