"""Real references for noise and style: open one memory-mapped and prepare it for a content tilt-series.

:func:`prepare_reference` opens one reference and, tilt by tilt, collects statistics, brings it to the content's
pixel size (:mod:`faket.imaging.sampling`), orders it by angle, drops blank / dark / saturated and excluded tilts
(:mod:`faket.imaging.refcheck`), optionally inverts it, checks its polarity, and matches its tilts to the
content's (:mod:`faket.imaging.tilts`). Its choices come in as one :class:`ReferenceOptions`; the returned
record goes into the output's provenance. Errors name the command-line option a value came from (``_OPT``,
``_ANG``), since that is where a user fixes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from faket.errors import InputError
from faket.imaging.reference_options import ANGLES_OPTION, PIXEL_SIZE_OPTION

_OPT = PIXEL_SIZE_OPTION
_ANG = ANGLES_OPTION


@dataclass(frozen=True)
class ReferenceOptions:
    """How to read and clean references; list fields hold one value for all references or one per reference.

    The names are those of the ``faket noise`` / ``faket style`` options (:func:`from_args` reads them)."""

    ref_pixel_size: list | None = None  # Angstrom, used when a header has none
    ref_angles_file: list | None = None  # angle files when not beside the reference
    exclude_tilts: list | None = None  # IMOD-style 1-based lists
    assume_same_sampling: bool = False
    keep_bad_tilts: bool = False
    invert_reference: bool = False
    max_angle_gap: float | None = None  # degrees; None = the matcher's default
    threads: int | None = None

    @classmethod
    def from_args(cls, args) -> ReferenceOptions:
        """The options of a parsed ``faket noise`` / ``faket style`` command line."""
        return cls(
            **{
                f: getattr(args, f, None) if f not in _FLAGS else bool(getattr(args, f, False))
                for f in cls.__dataclass_fields__
            }
        )


_FLAGS = ("assume_same_sampling", "keep_bad_tilts", "invert_reference")


def _per_ref(values, k: int, n: int, option: str):
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    if len(values) != n:
        raise InputError(f"{option} given {len(values)} times for {n} references; give it once or once per reference")
    return values[k]


def _threads(args) -> int:
    n = getattr(args, "threads", None)
    if n:
        return int(n)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def _open(path, what: str):
    """Memory-map an MRC file (validated like faket.formats.mrc.read_mrc, without reading the data)."""
    # lazy: mrcfile, numpy (faket's start-up imports every command module)
    import mrcfile

    from faket.formats.mrc import mrc_open_error, readable_file

    p = readable_file(path, what)
    try:
        mrc = mrcfile.mmap(p, mode="r", permissive=False)
    except (ValueError, OSError, EOFError, RuntimeError) as exc:
        raise mrc_open_error(p, what, exc) from None
    d = mrc.data
    if d is None or d.size == 0 or 0 in d.shape:
        mrc.close()
        raise InputError(f"{p}: {what} has no data")
    if d.ndim not in (2, 3):
        mrc.close()
        raise InputError(f"{p}: {what} must be 2-D or 3-D, got {d.ndim}-D array of shape {d.shape}")
    if np.iscomplexobj(d):
        mrc.close()
        raise InputError(f"{p}: {what} holds complex values; expected real densities")
    return mrc


@dataclass
class PreparedReference:
    data: np.ndarray  # (R', Y', X') float32: kept tilts, at the content's sampling, ordered by angle
    angles: np.ndarray | None  # (R',) or None
    index: np.ndarray  # (T,) matched row of ``data`` per content tilt
    gap: np.ndarray  # (T,) angle gaps
    record: dict  # provenance
    keep: np.ndarray  # (R',) stack indices (0-based, file order) of the rows of ``data``
    plan: object = None

    @property
    def voxel_size_a(self):
        return self.record["sampling"]["pixel_used_a"]


def prepare_reference(
    path,
    k: int,
    n_refs: int,
    args: ReferenceOptions,
    *,
    kind: str,
    content_T: int | None,
    content_angles,
    content_path,
    content_pixel: float | None,
    warn,
    info=None,
    progress=None,
    what: str = "reference",
) -> PreparedReference:
    """Open, check, resample, order, clean and match reference ``k`` of ``n_refs`` (see the module doc)."""
    # lazy: numpy (faket's start-up imports every command module)
    from faket.formats.mrc import voxel_size_or_none
    from faket.formats.tiltmeta import (
        angle_order,
        check_angles,
        find_tilt_metadata,
        parse_exclude,
        read_tilt_metadata,
    )
    from faket.imaging.refcheck import TiltStats, bad_tilts, polarity
    from faket.imaging.sampling import plan_resample, resample_stack
    from faket.imaging.tilts import match_by_angle, match_stack

    opt_name = _OPT[kind]
    mrc = _open(path, what)
    try:
        data = mrc.data if mrc.data.ndim == 3 else mrc.data[None]
        n_total, ny, nx = data.shape
        # tilt metadata
        ang_file = _per_ref(getattr(args, "ref_angles_file", None), k, n_refs, _ANG[kind])
        meta = None
        src = ang_file if ang_file is not None else find_tilt_metadata(path)
        if src is not None:
            meta = read_tilt_metadata(src, stack=path, stack_shape=data.shape)
            check_angles(meta.angles, n_total, source=meta.source, stack=path)
        angles = None if meta is None else meta.angles
        # pixel sizes
        header = voxel_size_or_none(mrc.voxel_size)
        opt = _per_ref(args.ref_pixel_size, k, n_refs, opt_name)
        if opt is not None and not (np.isfinite(opt) and opt > 0):
            raise InputError(f"{opt_name} {opt:g}: must be positive")
        samp = {"content_pixel_a": content_pixel, "reference_header_a": header, "option_a": opt}
        if header is not None:
            ref_px, how = header, "header"
            if opt is not None and abs(opt / header - 1) > 0.01:
                warn(
                    f"{path}: header pixel size {header:g} A is used; {opt_name} {opt:g} applies only to "
                    "references without one"
                )
        elif opt is not None:
            ref_px, how = float(opt), opt_name
        elif meta is not None and meta.pixel_size_a is not None:
            ref_px, how = meta.pixel_size_a, f"{meta.source.name} (PixelSpacing)"
        else:
            ref_px, how = None, None
        if args.assume_same_sampling:
            plan = None
            samp.update({"mode": "assume-same-sampling", "pixel_used_a": ref_px, "factor": 1.0})
        else:
            if ref_px is None:
                raise InputError(
                    f"{path}: no pixel size in the header (0 or 1); pass {opt_name} A (or --assume-same-sampling)"
                )
            if content_pixel is None:  # pragma: no cover - content_pixel_size() raises first
                raise InputError(f"{content_path}: content pixel size unknown; pass --content-pixel-size A")
            plan = plan_resample((ny, nx), ref_px, content_pixel)
            samp.update(
                {
                    "mode": "resampled" if not plan.identity else "same sampling",
                    "pixel_source": how,
                    "pixel_used_a": ref_px,
                    **plan.to_dict(),
                }
            )
        # one pass over the file: statistics of the raw tilts + resampling, in angle order
        order = angle_order(angles) if angles is not None else np.arange(n_total)
        stats = TiltStats(n_total)

        def tilt_fn(i, raw):
            if raw.dtype.kind == "f" and not np.isfinite(raw).all():
                raise InputError(f"{path}: tilt {i + 1} contains NaN/Inf values")
            stats.add(i, raw)

        if plan is None:
            plan = plan_resample((ny, nx), 1.0, 1.0)  # identity
        if info is not None and not plan.identity:
            info(
                f"{path}: {ref_px:g} A ({how}) -> {content_pixel:g} A: {ny}x{nx} -> "
                f"{plan.shape_out[0]}x{plan.shape_out[1]} (Fourier {'crop' if plan.factor < 1 else 'pad'})"
            )
        out = resample_stack(
            data,
            plan,
            indices=order,
            invert=bool(args.invert_reference),
            workers=_threads(args),
            tilt_fn=tilt_fn,
            progress=progress,
        )
    finally:
        mrc.close()

    # hazards
    bad = {} if n_total == 1 else bad_tilts(stats)
    manual = parse_exclude(_per_ref(args.exclude_tilts, k, n_refs, "--exclude-tilts"), n_total)
    excluded = {int(i): "--exclude-tilts" for i in manual}
    if bad:
        listing = ", ".join(f"{i + 1} {r}" for i, r in sorted(bad.items()))
        if args.keep_bad_tilts:
            warn(f"{path}: kept suspicious tilts (--keep-bad-tilts; 1-based): {listing}")
        else:
            warn(f"{path}: excluding {len(bad)} tilt(s) from fits and style targets (1-based, stack order): {listing}")
            for i, r in bad.items():
                excluded.setdefault(i, r)
    keep_sorted = np.array([i not in excluded for i in order], dtype=bool)
    if not keep_sorted.any():
        raise InputError(f"{path}: every tilt is excluded ({len(excluded)} of {n_total})")
    keep = order[keep_sorted]
    out = out[keep_sorted]
    kept_angles = None if angles is None else angles[keep]

    # polarity, on what will be used
    pol = polarity(out)
    if pol["verdict"] == "bright":
        if args.invert_reference:
            warn(
                f"{path}: after --invert-reference, dense objects appear BRIGHT (polarity {pol['statistic']:+.3f}); "
                "faket's projections have dense = dark: the file was probably not inverted"
            )
        else:
            warn(
                f"{path}: dense objects appear BRIGHT (inverted contrast? polarity statistic "
                f"{pol['statistic']:+.3f}; faket's projections have dense = dark): pass --invert-reference to flip it"
            )

    # matching to the content (content_T None: no content to match; faket realism pairs tilts itself)
    if content_T is None:
        idx, gap = np.zeros(0, dtype=np.int64), np.zeros(0)
    elif n_total == 1:
        idx, gap = np.zeros(content_T, dtype=np.int64), np.zeros(content_T)
    elif kept_angles is not None and content_angles is not None:
        idx, gap = match_stack(
            content_angles,
            content_T,
            kept_angles,
            keep.size,
            reference_path=path,
            content_path=content_path,
            max_gap_deg=args.max_angle_gap,
            kind=kind_word(kind),
            warn=warn,
        )
    else:
        # by index (counts must agree); excluded tilts use the nearest kept tilt by index
        match_stack(
            content_angles,
            content_T,
            angles,
            n_total,
            reference_path=path,
            content_path=content_path,
            max_gap_deg=args.max_angle_gap,
            kind=kind_word(kind),
            warn=warn,
        )
        idx, _ = match_by_angle(np.arange(content_T, dtype=float), keep.astype(float))
        gap = np.zeros(content_T)
    # "matched_index": the matched tilt's index in the reference FILE (0-based), for every content tilt
    rec = {
        "matched_index": keep[np.asarray(idx, dtype=np.int64)].tolist(),
        "sampling": samp,
        "shape_raw": [int(n_total), int(ny), int(nx)],
        "shape_used": list(out.shape),
        "dtype_raw": str(data.dtype),
        "metadata": None if meta is None else meta.to_dict(),
        "ordered_by_angle": bool(angles is not None and not np.array_equal(order, np.arange(n_total))),
        "kept_tilts_1based": [int(i) + 1 for i in keep],
        "excluded_tilts_1based": {str(i + 1): r for i, r in sorted(excluded.items())},
        "detected_bad_tilts_1based": {str(i + 1): r for i, r in sorted(bad.items())},
        "inverted": bool(args.invert_reference),
        "polarity": pol,
    }
    if meta is not None and meta.order is not None:
        rec["acquisition_order_used_tilts"] = [int(meta.order[i]) for i in keep]
    return PreparedReference(
        out, kept_angles, np.asarray(idx, dtype=np.int64), np.asarray(gap, dtype=float), rec, keep, plan
    )


def kind_word(kind: str) -> str:
    return "style" if kind == "style" else "reference"


def prepare_twin(path, prep: PreparedReference, args: ReferenceOptions, what: str = "clean reference") -> np.ndarray:
    """The clean twin of a prepared reference, through the same crop/resampling, order, exclusions, inversion."""
    # lazy: numpy (faket's start-up imports every command module)
    from faket.imaging.sampling import resample_stack

    mrc = _open(path, what)
    try:
        d = mrc.data if mrc.data.ndim == 3 else mrc.data[None]
        if d.shape != tuple(prep.record["shape_raw"]):
            raise InputError(f"{path}: shape {d.shape} differs from its reference {tuple(prep.record['shape_raw'])}")
        return resample_stack(
            d, prep.plan, indices=prep.keep, invert=bool(args.invert_reference), workers=_threads(args)
        )
    finally:
        mrc.close()
