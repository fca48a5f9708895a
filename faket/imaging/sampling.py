"""Bring a reference (tilt-series, micrograph or tomogram) to the content's pixel size by Fourier cropping/padding.

Why Fourier cropping / padding
------------------------------
The noise fit reads the noise floor from the top of the spectrum (0.7-0.95 Nyquist, :mod:`faket.imaging.noise`) and the
style step matches Gram statistics whose texture lives at the same frequencies. A resampler for references must
therefore (1) not alias (power above the new Nyquist folded back would raise the floor), and (2) not attenuate
anything below the new Nyquist (an interpolating or smoothing kernel -- linear, cubic, Lanczos, Gaussian
pre-filter -- rolls off the top octave and would read as less noise). Cutting the discrete spectrum at the new
Nyquist (downsampling) or extending it with zeros (upsampling) is the one linear resampler that does both exactly
for the periodic image: the retained bins are unchanged, nothing else enters. It is the standard in cryo-EM
(IMOD ``newstack -ftreduce``, RELION/cryoSPARC Fourier cropping). The price is Gibbs ringing from the
non-periodic edges: on a smooth test image with a strong edge step (4x crop) the error is 2.4 std at the outermost
output pixel, 0.3 std two pixels in, then decays like 1/distance (0.1 std at 32 pixels; see docs/references.md).

Conventions (the same as :func:`scipy.signal.resample`, which does the work, one axis at a time):

- the DC bin is kept and the result scaled by ``M / N`` per axis, so every tilt's mean is preserved exactly;
- odd and even sizes, and non-square tilts, are handled per axis;
- the unpaired Nyquist bin of an even size: when downsampling, the +/- bin pair of the input at the new Nyquist is
  united into the single output bin; when upsampling, the input's Nyquist bin is split in half over the +/- pair.
  So ``down(up(x)) == x`` (to float rounding) and a 2x Fourier-upsampled copy returns the original.

The output size per axis is ``M = round(N' * f)`` with ``f = pixel_in / pixel_out``; ``N'`` is ``N`` or a few pixels
less (a centred crop, :func:`plan_resample`) so that ``N' * f`` is within 0.1 % of an integer: the effective output
pixel ``pixel_in * N' / M`` is then the target to 0.1 % (tiny tilts excepted; the plan reports the exact value).

Memory: stacks are reduced tilt by tilt (:func:`resample_stack`), so a memory-mapped 41 x 4096 x 4096 input costs
one input tilt and its spectrum (~0.2 GB) besides the (small) output; each tilt's mapped pages are released from
the process once read. Pure functions: arrays in, arrays out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from faket.formats.voxel import SAME_SAMPLING_RTOL  # pixel sizes within it: the same sampling (no resampling)

__all__ = [
    "ResamplePlan",
    "plan_resample",
    "resample_image",
    "resample_stack",
    "resample_volume",
    "fourier_resize",
    "SAME_SAMPLING_RTOL",
]

_SIZE_RTOL = 1e-3


@dataclass(frozen=True)
class ResamplePlan:
    """How one ``(Y, X)`` image goes from ``pixel_in`` to (about) ``pixel_out`` Angstrom.

    ``crop`` = ``(y0, y1, x0, x1)``: the centred input window kept; ``shape_out`` = ``(My, Mx)``;
    ``pixel_out_yx``: the exact output pixel size per axis (``pixel_in * N' / M``)."""

    shape_in: tuple[int, int]
    crop: tuple[int, int, int, int]
    shape_out: tuple[int, int]
    pixel_in: float
    pixel_target: float
    pixel_out_yx: tuple[float, float]

    @property
    def factor(self) -> float:
        """``pixel_in / pixel_target`` (< 1: the reference is downsampled)."""
        return self.pixel_in / self.pixel_target

    @property
    def identity(self) -> bool:
        return self.shape_out == self.shape_in and self.crop == (0, self.shape_in[0], 0, self.shape_in[1])

    def to_dict(self) -> dict:
        return {
            "pixel_in_a": self.pixel_in,
            "pixel_target_a": self.pixel_target,
            "pixel_out_a_yx": [round(v, 6) for v in self.pixel_out_yx],
            "factor": round(self.factor, 6),
            "shape_in_yx": list(self.shape_in),
            "crop_yx": list(self.crop),
            "shape_out_yx": list(self.shape_out),
            "method": "fourier crop/pad (scipy.signal.resample per axis)",
        }


def _axis_plan(n: int, f: float) -> tuple[int, int]:
    """(kept input length N', output length M) for one axis."""
    if abs(f - 1.0) <= SAME_SAMPLING_RTOL:
        return n, n
    best = None
    max_crop = max(2, int(math.ceil(0.05 * n)))
    for c in range(0, min(max_crop, n - 1) + 1):
        nn = n - c
        m = max(1, int(round(nn * f)))
        err = abs(nn * f - m) / (nn * f)
        if best is None or err < best[0] - 1e-12:
            best = (err, nn, m)
        if err <= _SIZE_RTOL:
            break
    return best[1], best[2]


def plan_resample(shape_yx: Sequence[int], pixel_in: float, pixel_out: float) -> ResamplePlan:
    """Sizes for bringing a ``shape_yx`` image from ``pixel_in`` to ``pixel_out`` Angstrom (see the module doc).

    Pixel sizes within 1 % (:data:`SAME_SAMPLING_RTOL`) give the identity plan."""
    ny, nx = int(shape_yx[0]), int(shape_yx[1])
    if not (pixel_in > 0 and pixel_out > 0 and math.isfinite(pixel_in) and math.isfinite(pixel_out)):
        raise ValueError(f"pixel sizes must be positive, got {pixel_in} -> {pixel_out}")
    f = pixel_in / pixel_out
    (nny, my), (nnx, mx) = _axis_plan(ny, f), _axis_plan(nx, f)
    y0, x0 = (ny - nny) // 2, (nx - nnx) // 2
    return ResamplePlan(
        shape_in=(ny, nx),
        crop=(y0, y0 + nny, x0, x0 + nnx),
        shape_out=(my, mx),
        pixel_in=float(pixel_in),
        pixel_target=float(pixel_out),
        pixel_out_yx=(pixel_in * nny / my, pixel_in * nnx / mx),
    )


def fourier_resize(img: np.ndarray, shape_out: Sequence[int], *, workers: int | None = None) -> np.ndarray:
    """Fourier crop / pad a 2-D image to ``shape_out`` (float32 out; mean preserved; see the module doc)."""
    # lazy: scipy
    import scipy.fft as sfft
    from scipy.signal import resample

    x = np.asarray(img, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"fourier_resize: expected a 2-D image, got shape {x.shape}")
    my, mx = int(shape_out[0]), int(shape_out[1])
    ny, nx = x.shape
    # the axis that shrinks most goes first, so the second pass runs on the smaller array
    order = (0, 1) if my / ny <= mx / nx else (1, 0)
    with sfft.set_workers(workers or 1):
        for ax in order:
            m = (my, mx)[ax]
            if x.shape[ax] != m:
                x = resample(x, m, axis=ax)
    return np.ascontiguousarray(x, dtype=np.float32)


def resample_image(img: np.ndarray, plan: ResamplePlan, *, workers: int | None = None) -> np.ndarray:
    """Apply ``plan`` to one 2-D image (any real dtype; float32 out)."""
    if plan.identity:
        return np.array(img, dtype=np.float32, copy=True)
    y0, y1, x0, x1 = plan.crop
    return fourier_resize(np.asarray(img[y0:y1, x0:x1], dtype=np.float32), plan.shape_out, workers=workers)


def _release_pages(view: np.ndarray) -> None:
    """Drop a memory-mapped tilt's pages from this process once it is read (``madvise(MADV_DONTNEED)``; the
    file stays in the page cache). Without it, a tilt-by-tilt pass over a memory-mapped 2.7 GB stack ends with
    the whole file counted in the process's resident memory. No-op for ordinary arrays or where unsupported."""
    base = view
    while getattr(base, "base", None) is not None and not isinstance(base, np.memmap):
        base = base.base
    if not isinstance(view, np.memmap) and not isinstance(base, np.memmap):
        return
    try:
        import ctypes
        import mmap as _mmap

        libc = ctypes.CDLL(None, use_errno=True)
        page = _mmap.PAGESIZE
        addr = view.ctypes.data
        start = addr - addr % page
        length = addr + view.nbytes - start
        length -= length % page  # whole pages only: a page shared with the next tilt is kept
        if length > 0:
            libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), 4)  # 4 = MADV_DONTNEED (Linux)
    except (OSError, AttributeError, ValueError):  # pragma: no cover - non-Linux
        pass


def resample_stack(
    stack,
    plan: ResamplePlan,
    *,
    indices: Sequence[int] | None = None,
    invert: bool = False,
    workers: int | None = None,
    progress: Callable | None = None,
    tilt_fn: Callable | None = None,
) -> np.ndarray:
    """Resample the tilts ``indices`` (default: all, in order) of a ``(T, Y, X)`` stack, one tilt at a time.

    ``stack`` may be a read-only memory map of any real dtype (int16, float16, ...): only one tilt is converted
    to float32 at a time. ``invert`` flips each tilt about its own mean (``2 mean - x``: contrast reversed,
    mean and std kept). ``tilt_fn(i, raw_tilt)`` is called on every raw input tilt before resampling (e.g. to
    collect statistics without a second pass over the file). Returns a new float32 ``(len(indices), My, Mx)``.
    """
    T = stack.shape[0]
    idx = list(range(T)) if indices is None else [int(i) for i in indices]
    out = np.empty((len(idx), *plan.shape_out), dtype=np.float32)
    it = range(len(idx)) if progress is None else progress(range(len(idx)))
    for k in it:
        raw = stack[idx[k]]
        if tilt_fn is not None:
            tilt_fn(idx[k], raw)
        t = resample_image(raw, plan, workers=workers)
        _release_pages(raw)
        if invert:
            m = np.float32(t.mean(dtype=np.float64))
            np.subtract(2 * m, t, out=t)
        out[k] = t
    return out


def resample_volume(
    vol, pixel_in: float, pixel_out: float, *, workers: int | None = None, progress: Callable | None = None
) -> tuple[np.ndarray, dict]:
    """Resample a ``(Z, Y, X)`` volume (e.g. a real tomogram given as a reference) to ``pixel_out``.

    Y and X slice by slice, then Z in blocks of Y rows (peak memory: the output-sized intermediate plus one
    input slice). Returns the float32 volume and a record of the sizes (as :meth:`ResamplePlan.to_dict`)."""
    # lazy: scipy
    import scipy.fft as sfft
    from scipy.signal import resample

    vol_shape = tuple(int(s) for s in vol.shape)
    plan = plan_resample(vol_shape[1:], pixel_in, pixel_out)
    zplan = _axis_plan(vol_shape[0], pixel_in / pixel_out)
    z0 = (vol_shape[0] - zplan[0]) // 2
    zs = range(z0, z0 + zplan[0])
    mid = resample_stack(vol, plan, indices=zs, workers=workers, progress=progress)
    if zplan[1] != zplan[0]:
        out = np.empty((zplan[1], *plan.shape_out), dtype=np.float32)
        step = max(1, (32 << 20) // max(1, 8 * mid.shape[0] * mid.shape[2]))
        with sfft.set_workers(workers or 1):
            for y in range(0, mid.shape[1], step):
                out[:, y : y + step] = resample(mid[:, y : y + step], zplan[1], axis=0)
        mid = out
    rec = plan.to_dict()
    rec.update(
        {
            "shape_in_zyx": list(vol_shape),
            "shape_out_zyx": list(mid.shape),
            "pixel_out_a_z": pixel_in * zplan[0] / zplan[1],
        }
    )
    return mid, rec
