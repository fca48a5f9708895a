"""Shared command-line plumbing: error handling, outputs with provenance, devices, progress bars.

Every ``faket <step>`` module in this package defines ``HELP`` (one line), ``add_arguments(parser)``
(light: no heavy imports) and ``run(args) -> int`` (heavy imports inside). A step writes its outputs
through :class:`Step`, which stages them as temporary files and renames them only when the step
succeeded, each MRC with its provenance sidecar (and ``.tlt`` for tilt-series).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from faket.errors import InputError
from faket.formats.voxel import DEFAULT_VOXEL_SIZE_A

# --------------------------------------------------------------------------------------------------
# argument helpers


def add_common_args(
    p: argparse.ArgumentParser, *, seed: bool = True, device: bool = False, threads: bool = True
) -> None:
    g = p.add_argument_group("run options")
    if seed:
        g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    if device:
        g.add_argument(
            "--device", default="auto", help="auto | cpu | cuda | cuda:I (default: auto = cuda when available)"
        )
    if threads:
        g.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores the process may use)")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bars or info messages")


def add_angle_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    g = p.add_argument_group("tilt angles")
    g.add_argument(
        "--angles",
        metavar="SPEC",
        help="start:stop:step in degrees, both ends included (e.g. -60:60:2), or a comma list",
    )
    g.add_argument(
        "--angles-file",
        metavar="F",
        help="angles file: IMOD .tlt/.rawtlt, SerialEM .mdoc, RELION 5 / Warp tilt-series STAR "
        "(F.star:NAME picks one of several tilt-series)",
    )
    g.set_defaults(_angles_required=required)


def angles_from_args(args, *, default: str | None = None):
    """Angles (degrees, numpy) from ``--angles`` / ``--angles-file`` (exactly one) or ``default``."""
    # lazy: numpy (faket's start-up imports every command module)
    from faket.formats.tiltmeta import check_angles, parse_angles, read_angles

    if args.angles and args.angles_file:
        raise InputError("give either --angles or --angles-file, not both")
    if args.angles_file:
        a = read_angles(args.angles_file)
        check_angles(a, None, source=args.angles_file)
        return a
    spec = args.angles or default
    if spec is None:
        raise InputError("tilt angles needed: pass --angles (e.g. -60:60:2) or --angles-file")
    a = parse_angles(spec)
    check_angles(a, None, source=f"--angles {spec}")
    return a


_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

# Device nodes a CUDA (or ROCm / WSL GPU) driver exposes; without any, torch.cuda.is_available() is False.
_GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg", "/proc/driver/nvidia/version")


def _check_device_spec(spec: str | None) -> str:
    s = (spec or "auto").strip().lower()
    if not _DEVICE_RE.match(s):
        raise InputError(f"--device {spec}: expected auto, cpu, cuda or cuda:I")
    return s


def cuda_may_be_available() -> bool:
    """Cheap answer to "could ``torch.cuda.is_available()`` be true?" without importing torch.

    When torch is already imported, ask it. Otherwise CUDA needs a GPU device node (``/dev/nvidia*``,
    ``/dev/kfd`` for ROCm, ``/dev/dxg`` on WSL) and ``CUDA_VISIBLE_DEVICES`` not set to nothing; only then
    is torch imported to check (``auto`` on a CPU-only machine thus costs no torch import).
    """
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    if not any(os.path.exists(n) for n in _GPU_NODES):
        return False
    # lazy: torch (faket's start-up imports every command module)
    import torch

    _apply_torch_threads(torch)
    return bool(torch.cuda.is_available())


def resolve_device(spec: str | None):
    """``auto`` -> cuda when available, else cpu; validates ``cuda[:i]``. Returns a ``torch.device``."""
    spec = _check_device_spec(spec)
    # lazy: torch (faket's start-up imports every command module)
    import torch

    _apply_torch_threads(torch)
    if spec == "auto":
        return torch.device("cuda" if cuda_may_be_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError(f"--device {spec}: CUDA is not available on this machine (use cpu or auto)")
    dev = torch.device(spec)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


def resolve_cuda_device(spec: str | None):
    """For steps with a numba CPU path: ``None`` when the step runs on the CPU, else the ``torch.device``.

    ``cpu``, and ``auto`` on a machine without a GPU device node, return ``None`` without importing torch.
    """
    spec = _check_device_spec(spec)
    if spec == "cpu" or (spec == "auto" and not cuda_may_be_available()):
        return None
    dev = resolve_device(spec)
    return None if dev.type == "cpu" else dev


def device_name(device) -> str:
    """``"cpu"`` for ``None`` (the numba path), else ``str(device)`` (for provenance)."""
    return "cpu" if device is None else str(device)


_THREADS: int | None = None


def _apply_torch_threads(torch) -> None:
    if _THREADS is not None and torch.get_num_threads() != _THREADS:
        torch.set_num_threads(_THREADS)


def set_threads(n: int | None) -> None:
    """Limit torch / numba / BLAS threads when ``--threads`` is given.

    Neither torch nor numba is imported here: the environment variables they read at import are set,
    and a library already imported is limited directly (torch also when :func:`resolve_device` imports it).
    """
    global _THREADS
    if n is None:
        return
    if n < 1:
        raise InputError(f"--threads {n}: must be at least 1")
    _THREADS = n
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(min(n, cores))
    else:
        numba = sys.modules["numba"]
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if "torch" in sys.modules:
        _apply_torch_threads(sys.modules["torch"])


def show_progress(args) -> bool:
    """Progress bars only on a TTY and without ``--quiet``."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


class _NoBar:
    """What a disabled tqdm bar does (nothing), without importing tqdm."""

    def __init__(self, iterable=None, total=None):
        self.iterable = iterable
        self.total = total
        self.n = 0

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def update(self, n=1) -> None:
        self.n += n

    def refresh(self) -> None:
        pass

    def set_postfix_str(self, s="", refresh=True) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def set_description(self, desc=None, refresh=True) -> None:
        pass

    def close(self) -> None:
        pass


def progress(iterable=None, *, args=None, total=None, desc=None, unit="it", enable: bool | None = None):
    """A tqdm bar, or a do-nothing stand-in (tqdm not imported) when bars are off."""
    if not (show_progress(args) if enable is None else enable):
        return _NoBar(iterable, total)
    # lazy: tqdm (faket's start-up imports every command module)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


def info(args, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"faket: {msg}", file=sys.stderr)


def warn(msg: str) -> None:
    """Warnings are always shown (also with --quiet)."""
    print(f"faket: warning: {msg}", file=sys.stderr)


def check_not_same(inputs: Iterable, outputs: Iterable) -> None:
    """Refuse an output path that is also an input (inputs are never modified)."""
    ins = {}
    for p in inputs:
        if p is None:
            continue
        ins[os.path.realpath(p)] = p
    for o in outputs:
        if o is None:
            continue
        if os.path.realpath(o) in ins:
            raise InputError(f"{o}: output path is also an input; choose another output name")


def voxel_size_or_assume(args, m, what: str = "input", default: float = DEFAULT_VOXEL_SIZE_A) -> float:
    """Voxel size from ``--voxel-size`` or the header; when neither, assume ``default`` and say so."""
    vs = getattr(args, "voxel_size", None)
    if vs is not None:
        if vs <= 0:
            raise InputError(f"--voxel-size {vs}: must be positive")
        return float(vs)
    if m.voxel_size_a is not None:
        return float(m.voxel_size_a)
    warn(f"{m.path}: no voxel size in the {what} header (0 or 1); assuming {default:g} A (pass --voxel-size to set it)")
    return float(default)


# --------------------------------------------------------------------------------------------------
# outputs


class Step:
    """Context of one step run: timing, inputs for provenance, staged outputs.

    >>> with Step("project", args, inputs=[args.volume]) as st:      # doctest: +SKIP
    ...     st.write_mrc(args.output, tilts, voxel, angles=angles, params={...})
    """

    def __init__(self, name: str, args, *, inputs: Iterable = (), seed: int | None = None):
        # lazy: numpy (faket's start-up imports every command module)
        from faket.formats.mrc import OutputTransaction

        self.name = name
        self.args = args
        self.inputs = [p for p in inputs if p is not None]
        self.seed = seed if seed is not None else getattr(args, "seed", None)
        # the run's start (set by faket.cli.main when the command line was parsed; else now): wall_time_s in
        # the sidecar is the whole step, not just the writing of its outputs
        self.t0 = getattr(args, "_t0", None) or time.perf_counter()
        self.tx = OutputTransaction()
        self._records: list[tuple[Path, dict]] = []

    def __enter__(self) -> Step:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self._write_sidecars()
                self.tx.commit()
            except BaseException:
                self.tx.rollback()
                raise
        else:
            self.tx.rollback()
        return False

    def params(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        d = {k: v for k, v in vars(self.args).items() if not k.startswith("_") and k != "func"}
        if extra:
            d.update(extra)
        return d

    def path(self, target) -> Path:
        """A temporary path for ``target`` (renamed to ``target`` on success)."""
        return self.tx.path(target)

    def write_mrc(
        self,
        target,
        data,
        voxel_size_a,
        *,
        angles=None,
        image_stack: bool | None = None,
        params: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        sidecar: bool = True,
        origin_a=None,
    ) -> None:
        """Stage ``target`` (MRC), ``target.tlt`` when ``angles`` given, and the JSON sidecar; ``origin_a``:
        the header origin (x, y, z, Angstrom) of a cropped / binned grid in the full volume."""
        # lazy: numpy (faket's start-up imports every command module)
        from faket.formats.mrc import sidecar_path, write_mrc
        from faket.formats.tiltmeta import tlt_path, write_tlt

        if image_stack is None:
            image_stack = angles is not None
        write_mrc(self.path(target), data, voxel_size_a, image_stack=image_stack, origin_a=origin_a)
        if angles is not None:
            write_tlt(self.path(tlt_path(target)), angles)
        if sidecar:
            rec_extra = {"output": {"path": str(target), "shape": list(data.shape), "voxel_size_a": voxel_size_a}}
            if origin_a is not None:
                rec_extra["output"]["origin_a_xyz"] = [float(v) for v in origin_a]
            if angles is not None:
                rec_extra["output"]["angles_deg"] = [float(a) for a in angles]
            if extra:
                rec_extra.update(extra)
            self._records.append((sidecar_path(target), {"params": params, "extra": rec_extra}))

    def write_sidecar(self, target_json, *, params=None, extra=None) -> None:
        """Stage a provenance JSON for a non-MRC output (written at commit time)."""
        self._records.append((Path(target_json), {"params": params, "extra": extra or {}}))

    def _write_sidecars(self) -> None:
        # lazy: numpy (faket's start-up imports every command module)
        from faket.provenance import build_record, write_json

        for target, r in self._records:
            rec = build_record(
                step=self.name,
                parameters=self.params(r["params"]),
                inputs=self.inputs,
                seed=self.seed,
                started=self.t0,
                extra=r["extra"],
            )
            write_json(self.path(target), rec)
