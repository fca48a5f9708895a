"""``faket noise``: tilt-aware noise fitted to one or more reference tilt-series (NOISY and CONTENT)."""

from __future__ import annotations

from faket.cli._common import Step, add_common_args, check_not_same, info, progress, set_threads, warn
from faket.cli._reference import add_reference_args
from faket.errors import InputError

# choices and defaults of faket.imaging.noise (NOISE_SPECTRA, SIGNAL_TRANSFERS, MATCHES, DEFAULT_*), spelled here so
# that building the parser imports no numpy; tests/test_noise.py checks they agree
NOISE_SPECTRA, DEFAULT_NOISE_SPECTRUM = ("white", "radial", "2d"), "2d"
SIGNAL_TRANSFERS, DEFAULT_SIGNAL_TRANSFER = ("none", "measured"), "measured"
MATCHES, DEFAULT_MATCH = ("meanstd", "distribution"), "meanstd"
SPECTRUM_MATCHES, DEFAULT_SPECTRUM_MATCH = ("none", "radial"), "radial"

HELP = "add tilt-aware noise fitted to a reference tilt-series (paired, blind or by SNR)"
DESCRIPTION = """\
Add FakET's per-tilt noise to clean projections.

Per tilt: standardise the clean tilt, y = r * tilt + sigma * noise, then match the tilt's mean and std to the
reference's (or, --match distribution, its whole intensity distribution). r and sigma are in standardised units:
r^2 + sigma^2 = 1, SNR = r^2/sigma^2. The noise is Gaussian with the 2-D power spectrum learnt from the matched
reference tilt (--noise-spectrum 2d, default; radial or white), and the clean tilt is first given the reference
signal's measured radial spectrum (--signal-transfer measured, default: the real image's blur).

  faket noise CLEAN.mrc --reference REF.mrc -o NOISY.mrc                     (blind fit from REF alone)
  faket noise CLEAN.mrc --reference REF.mrc --reference-clean REF_CLEAN.mrc -o NOISY.mrc   (paired fit)
  faket noise CLEAN.mrc --reference REF.mrc --snr 0.1 -o NOISY.mrc           (SNR by hand)
  faket noise CLEAN.mrc --reference A.mrc --reference B.mrc --content-out CONTENT.mrc -o NOISY.mrc

Reference tilts are matched to content tilts by angle (CLEAN.tlt, REF.tlt); a single 2-D reference image
serves every tilt. Fitted curves go in NOISY.json.
"""


def add_arguments(p) -> None:
    p.add_argument("clean", metavar="CLEAN.mrc", help="clean (noiseless) tilt-series, angles in CLEAN.tlt")
    p.add_argument("-o", "--output", required=True, metavar="NOISY.mrc", help="output NOISY tilt-series")
    p.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="REF.mrc",
        help="reference tilt-series (angles in REF.tlt) or one 2-D image; repeat to average fits",
    )
    p.add_argument(
        "--reference-clean",
        action="append",
        default=[],
        metavar="REF_CLEAN.mrc",
        help="clean twin of each --reference (same shape, same order): enables --estimate paired",
    )
    p.add_argument(
        "--content-out", metavar="CONTENT.mrc", help="also write the CONTENT modality (noise scaled by --content-noise)"
    )
    p.add_argument(
        "--content-noise",
        type=float,
        default=0.25,
        help="noise scale of the CONTENT modality relative to NOISY (default: 0.25)",
    )
    p.add_argument(
        "--estimate",
        choices=("paired", "blind"),
        default=None,
        help="how r and sigma are fitted: paired (needs --reference-clean) or blind "
        "(default: paired when --reference-clean is given, else blind)",
    )
    p.add_argument(
        "--noise-mtf",
        choices=("measured", "none", "counting"),
        default="measured",
        help="blind fit: noise spectrum model (default: measured = white up to the data's own "
        "roll-off; none = white; counting = sinc^2 detector/binning MTF)",
    )
    p.add_argument(
        "--snr",
        type=float,
        default=None,
        help="set SNR = r^2/sigma^2 by hand for every tilt (overrides the fit; references then "
        "give only the per-tilt mean/std, and without a reference the clean tilt's are kept)",
    )
    p.add_argument(
        "--global", dest="global_fit", action="store_true", help="one r and sigma for all tilts (the paper's BASELINE)"
    )
    p.add_argument(
        "--smooth-order",
        type=int,
        default=2,
        help="degree of the polynomial that smooths the curves over the reference tilt index "
        "(default: 2; -1 = no smoothing)",
    )
    p.add_argument(
        "--max-angle-gap",
        type=float,
        default=5.0,
        metavar="DEG",
        help="fail when a content tilt has no reference tilt within DEG degrees (default: 5); "
        "gaps above 1 deg are warned about and the nearest tilt is used",
    )
    g = p.add_argument_group("noise spectrum, signal transfer, intensity matching (see docs/noise.md)")
    g.add_argument(
        "--noise-spectrum",
        choices=NOISE_SPECTRA,
        default=DEFAULT_NOISE_SPECTRUM,
        help="power spectrum of the added noise, learnt per matched reference tilt (the reference's "
        "smoothed spectrum minus the signal's share): 2d (anisotropy kept), radial (rotational "
        f"average) or white (default: {DEFAULT_NOISE_SPECTRUM})",
    )
    g.add_argument(
        "--signal-transfer",
        choices=SIGNAL_TRANSFERS,
        default=DEFAULT_SIGNAL_TRANSFER,
        help="measured: filter each clean tilt so its radial spectrum is the reference signal's "
        "(the real image's blur: CTF envelopes, MTF, dose); none: the projection as it is "
        f"(default: {DEFAULT_SIGNAL_TRANSFER})",
    )
    g.add_argument(
        "--match",
        choices=MATCHES,
        default=DEFAULT_MATCH,
        help="meanstd: each tilt gets the reference's (smoothed) mean and std; distribution: its "
        "intensities are mapped onto the matched reference tilt's distribution (redistributor) "
        f"(default: {DEFAULT_MATCH})",
    )
    p.add_argument(
        "--match-spectrum",
        choices=SPECTRUM_MATCHES,
        default=DEFAULT_SPECTRUM_MATCH,
        help="radial: last, give each NOISY tilt the radially averaged power spectrum of its matched reference "
        "tilt (a zero-phase radial filter; the measured realism gain: docs/noise.md); none: leave it "
        f"(default: {DEFAULT_SPECTRUM_MATCH})",
    )
    add_reference_args(p, "noise")
    add_common_args(p, seed=True, device=False, threads=True)


def run(args) -> int:
    # lazy: numpy (faket's start-up imports every command module)
    import numpy as np

    from faket.cli._reference import content_pixel_size
    from faket.formats.tiltmeta import read_tiltseries
    from faket.imaging import noise as nz
    from faket.imaging.refcheck import dark_regions
    from faket.imaging.reference import ReferenceOptions, prepare_reference, prepare_twin

    set_threads(args.threads)
    if args.snr is not None and (not np.isfinite(args.snr) or args.snr < 0):
        raise InputError(f"--snr {args.snr:g}: must be a finite number >= 0")
    if not np.isfinite(args.content_noise) or args.content_noise < 0:
        raise InputError(f"--content-noise {args.content_noise:g}: must be >= 0")
    if args.max_angle_gap is not None and not args.max_angle_gap >= 0:
        raise InputError(f"--max-angle-gap {args.max_angle_gap:g}: must be >= 0")
    if args.smooth_order < -1:
        raise InputError(f"--smooth-order {args.smooth_order}: must be >= -1")
    if not args.reference and args.snr is None:
        raise InputError("give --reference REF.mrc (to fit the noise) or --snr S")
    if args.match == "distribution" and not args.reference:
        raise InputError("--match distribution needs --reference REF.mrc (the distribution to match)")
    estimate = args.estimate or ("paired" if args.reference_clean else "blind")
    if args.snr is not None:
        estimate = "snr"
    if args.reference_clean and len(args.reference_clean) != len(args.reference):
        raise InputError(
            f"--reference-clean given {len(args.reference_clean)} time(s) for "
            f"{len(args.reference)} --reference; give one clean twin per reference"
        )
    if estimate == "paired" and not args.reference_clean:
        raise InputError("--estimate paired needs --reference-clean REF_CLEAN.mrc (the reference's clean twin)")
    inputs = [args.clean, *args.reference, *args.reference_clean]
    check_not_same(inputs, [args.output, args.content_out])
    if args.content_out is not None and args.content_out == args.output:
        raise InputError(f"{args.content_out}: --content-out must differ from -o")

    clean_m, content_angles = read_tiltseries(
        args.clean, require_angles=False, allow_single=True, what="clean tilt-series"
    )
    clean = clean_m.data
    T = clean.shape[0]
    clean_stats = nz.check_tilts(clean, f"{args.clean}")

    per_ref = []
    records = []
    bands = []  # per reference: the top of its band at the content's sampling (cycles/pixel; < 0.5 when padded)
    stacks = []  # per reference: (prepared stack, matched index, clean twin or None, fitted curves)
    c_px = content_pixel_size(args, clean_m, args.clean) if args.reference else None
    for k, ref_path in enumerate(args.reference):
        blind_info = None
        prep = prepare_reference(
            ref_path,
            k,
            len(args.reference),
            ReferenceOptions.from_args(args),
            kind="noise",
            content_T=T,
            content_angles=content_angles,
            content_path=args.clean,
            content_pixel=c_px,
            warn=warn,
            info=lambda msg: info(args, msg),
        )
        ref, ref_angles, idx, gap = prep.data, prep.angles, prep.index, prep.gap
        regions = dark_regions(ref)
        if regions:
            listing = ", ".join(
                f"{int(prep.keep[i]) + 1} ({100 * r['fraction']:.0f}% of the area, {r['depth_std']:.1f} std darker)"
                for i, r in sorted(regions.items())
            )
            warn(
                f"{ref_path}: large dark region (contamination? ice, carbon, a grid bar's edge) in {len(regions)} "
                f"tilt(s) (1-based, stack order): {listing}; the fit leaves it out of those tilts' mean and std "
                "(exclude the tilts with --exclude-tilts, or crop the reference, to leave it out altogether)"
            )
        rc = None
        if estimate == "paired":
            rc_path = args.reference_clean[k]
            rc = prepare_twin(rc_path, prep, ReferenceOptions.from_args(args))
            nz.check_tilts(rc, str(rc_path))
            raw = nz.paired_fit(ref, rc, what=str(ref_path))
        elif estimate == "blind":
            blind_info = {}
            raw = nz.blind_fit(
                ref,
                noise_mtf=args.noise_mtf,
                what=str(ref_path),
                info=blind_info,
                exclude={i: r["mask"] for i, r in regions.items()},
            )
            low = nz.unresolved_tilts(raw)
            if low.size:
                names = ", ".join(str(int(prep.keep[i]) + 1) for i in low)
                warn(
                    f"{ref_path}: the blind fit cannot tell signal from noise on {low.size} of {ref.shape[0]} "
                    f"tilt(s) (SNR < {nz.BLIND_SNR_RESOLVED:g}, median {float(np.median(raw.snr[low])):.2g}; "
                    f"1-based, stack order: {names}): NOISY is then nearly pure noise there; if the data hold "
                    "signal, set it with --snr S, or fit a physics reference with its clean twin "
                    "(--estimate paired)"
                )
        else:
            m, s = nz.check_tilts(ref, str(ref_path))
            raw = nz.snr_curves(args.snr, m, s)
        smooth = nz.smooth_curves(raw, args.smooth_order) if ref.shape[0] > 1 else raw
        per_ref.append(smooth.take(idx))
        stacks.append((ref, idx, rc, smooth))
        factor = float((prep.record.get("sampling") or {}).get("factor") or 1.0)
        bands.append(0.5 if factor <= 1.0 else 0.45 / factor)  # padded: 90 % of its own Nyquist (edge ring)
        records.append(
            {
                "path": str(ref_path),
                "n_tilts": int(ref.shape[0]),
                "angles_deg": None if ref_angles is None else ref_angles.tolist(),
                "matched_index": idx.tolist(),
                "angle_gap_deg": gap.tolist(),
                "raw": raw.to_dict(),
                "smoothed": smooth.to_dict(),
                "blind": blind_info,
                "dark_regions_1based": {
                    str(int(prep.keep[i]) + 1): {"fraction": r["fraction"], "depth_std": r["depth_std"]}
                    for i, r in sorted(regions.items())
                },
                **prep.record,
            }
        )
        info(
            args,
            f"{ref_path}: {estimate} fit, median SNR {float(np.median(raw.snr)):.3g} "
            f"(sigma {float(np.median(raw.sigma)):.3f})",
        )

    if per_ref:
        curves = nz.average_curves(per_ref)
    else:
        curves = nz.NoiseCurves(np.zeros(T), np.ones(T), *clean_stats)
    if estimate == "snr":
        s = nz.snr_curves(args.snr, curves.mean, curves.std)
        curves = s
    if args.global_fit:
        curves = nz.global_curves(curves)
    n_zero = int((curves.r < 1e-3).sum())
    if n_zero and estimate == "blind":
        warn(
            f"blind fit: {n_zero} of {T} tilts read as pure noise (SNR below what the blind fit resolves, "
            "~0.02): NOISY carries no signal there; consider --snr S, or --estimate paired with the "
            "reference's clean twin (faket reference --clean-out)"
        )

    # noise spectrum and signal transfer, learnt from the matched reference tilts at the content's sampling
    spectra, transfer, spec_rec = None, None, None
    kind, tkind = args.noise_spectrum, args.signal_transfer
    if not stacks:
        kind, tkind = "white", "none"
    if kind != "white" or tkind != "none":
        n = nz.spectrum_grid(clean.shape, *[st_[0].shape for st_ in stacks])
        ring_n = min(min(sh[1:]) for sh in [clean.shape] + [st_[0].shape for st_ in stacks])
        rn = ring_n if tkind == "measured" else None  # ring spectra: only for the transfer
        Pc, Rc = nz.tilt_spectra(clean, n, ring_n=rn)
        P_list, R_list = [], []
        for k, (ref, idx, rc, smooth) in enumerate(stacks):
            P, R = nz.tilt_spectra(ref, n, ring_n=rn)
            records[k]["spectrum"] = nz.spectra_summary(P / nz.grid_mean(P)[:, None, None])
            if rc is not None:  # paired: the residual is the noise; the twin's spectrum is the signal's
                P = nz.residual_psd(ref, rc, smooth.r, n)
                if rn is not None:
                    _, Rt = nz.tilt_spectra(rc, n, ring_n=rn)
                    R = smooth.r[:, None] ** 2 * Rt + smooth.sigma[:, None] ** 2
            P_list.append(P[idx])
            R_list.append(None if R is None else R[idx])
        P_ref = np.mean(P_list, axis=0)
        R_ref = None if rn is None else np.mean(R_list, axis=0)
        if tkind == "measured":
            transfer = nz.signal_transfer(R_ref, Rc, nz.ring_frequencies(ring_n), curves.r, curves.sigma)
            Pc = nz.transferred_psd(Pc, transfer)
        if kind != "white":
            spectra = nz.noise_spectra(P_ref, curves.r, kind, clean_psd=None if estimate == "paired" else Pc)
        spec_rec = {"grid": [int(n), int(n // 2 + 1)], "rings_per_cycle": int(ring_n)}
    noise_rec = {
        "kind": kind,
        "requested": args.noise_spectrum,
        "definition": "Gaussian noise with the matched reference tilt's smoothed 2-D power spectrum (Hann "
        "window, periodogram averaged onto the grid, Gaussian of 1 bin) minus the signal's "
        "share r^2 x the clean tilt's, >= floor x the reference's; radial: its rotational "
        "average; synthesis irfft2(rfft2(white) * sqrt(S)), S interpolated to the content's "
        "grid, unit variance (sigma keeps its meaning); paired: the residual's spectrum",
        "floor": nz.SPECTRUM_FLOOR if kind != "white" else None,
        "summary": None if spectra is None else nz.spectra_summary(spectra),
        **(spec_rec or {}),
    }
    transfer_rec = {
        "kind": tkind,
        "requested": args.signal_transfer,
        "definition": "radial power gain = (reference spectrum - sigma^2) / (r^2 x clean spectrum), "
        f"<= {nz.MAX_TRANSFER_GAIN:g}^2, applied to the clean tilt before standardising",
        "summary": None if transfer is None else transfer.summary(),
    }
    if not stacks and (args.noise_spectrum != "white" or args.signal_transfer != "none"):
        info(args, "no reference: white noise, no signal transfer")

    out = nz.add_noise(
        clean,
        curves,
        seed=args.seed,
        content_noise=args.content_noise if args.content_out else None,
        clean_stats=clean_stats,
        spectra=spectra,
        transfer=transfer,
        progress=lambda it: progress(it, args=args, total=T, desc="noise", unit="tilt"),
    )
    noisy, content = out if args.content_out else (out, None)
    targets = [[ref[idx[t]] for ref, idx, _, _ in stacks] for t in range(T)]  # matched reference tilt(s) per tilt
    spec_match = {"kind": args.match_spectrum if stacks else "none", "requested": args.match_spectrum}
    if spec_match["kind"] == "radial":
        band = min(bands)
        noisy, resid = nz.match_radial_spectrum(
            noisy,
            targets,
            band=band,
            progress=lambda it: progress(it, args=args, total=T, desc="spectrum", unit="tilt"),
        )
        spec_match.update(
            {
                "definition": "NOISY tilts filtered (zero phase) to the smoothed radially averaged power spectrum "
                "(periodic, unwindowed) of the matched reference tilt(s), mean and std kept; CONTENT untouched",
                "iterations": nz.SPECTRUM_MATCH_ITERATIONS,
                "band_cycles_per_px": round(band, 6),
                "residual_log10_median": round(float(np.median(resid)), 4),
            }
        )
    match = args.match
    if match == "distribution":
        noisy = nz.match_distribution(noisy, targets, seed=args.seed)
        if content is not None:
            content = nz.match_distribution(content, targets, seed=args.seed)

    model = {
        "estimate": estimate,
        "global": bool(args.global_fit),
        "smooth_order": args.smooth_order,
        "noise_mtf": args.noise_mtf if estimate == "blind" else None,
        "definition": "standardised tilts: r^2 + sigma^2 = 1, SNR = r^2 / sigma^2; "
        "out = match(r * z + s * e) with z the (transferred) standardised clean tilt, e the "
        "coloured noise, s = sigma (NOISY) or content_noise * sigma (CONTENT), match = mean/std "
        "or the reference tilt's distribution",
        "noise_spectrum": noise_rec,
        "spectrum_match": spec_match,
        "signal_transfer": transfer_rec,
        "match": {
            "kind": match,
            "method": "mean and std (smoothed curves)"
            if match == "meanstd"
            else "redistributor (Harar et al.): target ppf o source cdf per tilt, matched reference tilt(s) "
            "at the content's sampling",
        },
        "curves": curves.to_dict(),
        "references": records,
    }
    with Step("noise", args, inputs=inputs) as st:
        st.write_mrc(
            args.output,
            noisy,
            clean_m.voxel_size_a,
            angles=content_angles,
            image_stack=True,
            extra={"noise_model": model, "modality": "noisy"},
        )
        if content is not None:
            st.write_mrc(
                args.content_out,
                content,
                clean_m.voxel_size_a,
                angles=content_angles,
                image_stack=True,
                extra={"noise_model": model, "modality": "content", "content_noise": args.content_noise},
            )
    info(args, f"wrote {args.output}" + (f" and {args.content_out}" if args.content_out else ""))
    return 0
