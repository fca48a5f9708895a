"""One command for a GPU machine: CUDA correctness checks against the CPU, then timings at the paper's sizes.

    bash bench/device.sh                                  # = python bench/device.py --device cuda
    .venv/bin/python bench/device.py --device cuda --out device-results
    .venv/bin/python bench/device.py --device cpu --small # the same script on the CPU in seconds (the test suite)

Writes ``device.json`` and ``device.md`` into ``--out`` (default ``device-results/``): the format is in
docs/performance.md#the-gpu-command. Budget: within 8 minutes on one NVIDIA GPU (A100/H100 class); every
timing case has a time budget (``--budget`` seconds, default 30): a style case times as many tilts of its
61-tilt series as fit in it and extrapolates to 61 (the row says how many were timed).

1. Checks, ``--device`` against the CPU path on small inputs (each with its tolerance, pass/fail):
   - projection (torch kernels on the device vs the CPU kernels), 40 x 48 x 56 volume, 61 tilts;
   - weighted back-projection of that tilt-series (the same two paths), bin 1 and bin 2;
   - style transfer, paper setting, random VGG-19 weights, 2 tilts of 96^2 (64^2 with --small), fp32: the losses, the loss
     gradient, and the styled output (one Adam step moves a pixel by ~lr * sign(gradient), so pixels whose
     gradient is ~0 may step the other way: their fraction is bounded, not zero);
   - picker segmentation (DeepFinder-style U-Net, seeded weights) of a 40^3 volume: scores and labels.
   On ``--device cpu`` the projection checks compare the torch kernels (what CUDA runs) on the CPU with the
   numba kernels, and the style / picker checks compare the CPU with itself (they test the script).
2. Timings on ``--device`` (synchronised; one warm-up first):
   - style transfer, paper setting: 61 x 1024^2 and 61 x 4096^2, fp32, tf32 (CUDA only) and bf16; tiled
     (``max_tile``) when the untiled tilt would not fit in the device's memory;
   - projection 1024^3 -> 61 tilts of 1024^2; reconstruction of those tilts back to 1024^3 (bin 1, ramp);
   - picker training steps per second at patch 56^3, batch 25, fp32 and bf16 (faket picker train --precision).
   ``--small``: 2 tilts of 64^2 (no warm-up), a 64^3 volume, one picker step at patch 16 batch 2: seconds on a
   CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ANGLES = np.arange(-60, 61, 2.0)  # 61 tilts, the paper's scheme


# --------------------------------------------------------------------------------------------------
# machine


def machine(torch, device) -> dict:
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }
    try:
        txt = Path("/proc/cpuinfo").read_text()
        name = next((l.split(":", 1)[1].strip() for l in txt.splitlines() if l.startswith("model name")), "")
        flags = set(txt.split())
        info["cpu"] = name or info["cpu"]
        info["cpu_bf16"] = sorted(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:  # pragma: no cover - not Linux
        pass
    try:
        info["load"] = list(os.getloadavg())
    except OSError:  # pragma: no cover
        pass
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(
            gpu=p.name,
            gpu_memory_gb=round(p.total_memory / 2**30, 1),
            capability=f"{p.major}.{p.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_bytes(torch, device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover
        return 8 << 30


# --------------------------------------------------------------------------------------------------
# checks


def rel_max(a, b) -> float:
    """max |a - b| / max |b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def rel_rms(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.sqrt(np.mean((a - b) ** 2)) / max(np.sqrt(np.mean(b**2)), 1e-30))


def check(rows, name, metric, value, tol, *, note="") -> None:
    ok = bool(np.isfinite(value) and value <= tol)
    rows.append(
        {"check": name, "metric": metric, "value": float(value), "tolerance": float(tol), "pass": ok, "note": note}
    )
    print(f"  {'PASS' if ok else 'FAIL'}  {name}: {metric} = {value:.3g} (tolerance {tol:g}) {note}", flush=True)


def run_checks(torch, device, rows, n_style: int = 96) -> None:
    from faket.imaging import projection as P

    rng = np.random.default_rng(0)
    vol = rng.random((40, 48, 56), dtype=np.float32)
    dev = None if device.type == "cpu" else device
    backend = "torch" if device.type == "cpu" else "auto"  # the device's kernels; torch on the CPU
    ref = P.project(vol, ANGLES, device=None, backend="numba")
    got = P.project(vol, ANGLES, device=dev or "cpu", backend=backend)
    check(rows, "projection 40x48x56 -> 61 tilts", "max abs diff / max abs value", rel_max(got, ref), 1e-5)
    for b in (1, 2):
        r_ref = P.reconstruct(ref, ANGLES, bin=b, device=None, backend="numba")
        r_got = P.reconstruct(ref, ANGLES, bin=b, device=dev or "cpu", backend=backend)
        check(
            rows,
            f"back-projection 61 tilts -> volume, bin {b}",
            "max abs diff / max abs value",
            rel_max(r_got, r_ref),
            1e-5,
        )

    from faket import style as st
    from faket.style.vgg import build_vgg

    content = rng.random((2, n_style, n_style), dtype=np.float32)
    init = np.clip(content + 0.5 * rng.standard_normal(content.shape).astype(np.float32), 0, None)
    style = rng.gamma(2.0, size=(2, n_style, n_style)).astype(np.float32)
    res = {}
    for d in ("cpu", str(device)):
        tdev = torch.device(d)
        st.configure_backends(tdev, "fp32", deterministic=True)
        model, _ = build_vgg("random", depth=29, seed=0, device=tdev)
        eng = st.StyleTransfer(model, st.PRESETS["paper"], tdev)
        refs = [st.Reference(style, index=np.arange(2))]
        tg = {l: torch.stack([eng.reference_grams(refs[0], j, 1.0)[l] for j in range(2)]) for l in eng.style_layers}
        c01 = eng._tensor(st.to_unit(content, *st.series_minmax(content)))
        x01 = eng._tensor(st.to_unit(init, *st.series_minmax(init)))
        total, _, g = eng.loss_and_grad(x01, c01, eng.content_features(c01), tg)
        out, _ = st.stylize_series(eng, content, init, refs, rescale=False)
        res[d] = (total.cpu().numpy(), g.cpu().numpy(), out)
    (l0, g0, o0), (l1, g1, o1) = res["cpu"], res[str(device)]
    check(rows, f"style loss, 2 x {n_style}^2, fp32", "max rel diff", rel_max(l1, l0), 1e-4)
    check(rows, "style loss gradient", "rel RMS diff", rel_rms(g1, g0), 1e-3)
    flipped = float(np.mean(np.abs(o1 - o0) > 1e-3))
    check(
        rows,
        "styled output (one Adam step)",
        "fraction of pixels off by > 1e-3",
        flipped,
        0.01,
        note="(sign flips where |gradient| ~ 0)",
    )

    from faket.picker.net import build_model
    from faket.picker.segment import segment

    v = rng.standard_normal((40, 40, 40)).astype(np.float32)
    lab, sc = {}, {}
    for d in ("cpu", str(device)):
        m = build_model(4, seed=0)
        lab[d], sc[d] = segment(m, v, patch=16, overlap=0.25, batch=4, device=d)
    check(
        rows,
        "picker segment 40^3, patch 16",
        "max abs score diff",
        float(np.abs(sc[str(device)] - sc["cpu"]).max()),
        1e-4,
    )
    check(
        rows,
        "picker segment labels",
        "fraction of voxels labelled differently",
        float(np.mean(lab[str(device)] != lab["cpu"])),
        1e-3,
    )


# --------------------------------------------------------------------------------------------------
# timings


def timed(torch, device, fn):
    sync(torch, device)
    t = time.perf_counter()
    r = fn()
    sync(torch, device)
    return time.perf_counter() - t, r


def style_series(T, n, seed=0):
    """Content / init / style tilts of n^2 (random textures; the speed does not depend on the content)."""
    rng = np.random.default_rng(seed)
    c = rng.random((T, n, n), dtype=np.float32)
    i = c + rng.standard_normal((T, n, n), dtype=np.float32)
    s = rng.gamma(2.0, size=(T, n, n)).astype(np.float32)
    return c, i, s


def time_style(torch, device, rows, n, precisions, budget, tilts=61, warm=True) -> None:
    import dataclasses

    from faket import style as st
    from faket.style.vgg import build_vgg

    # untiled needs ~3 kB per pixel in fp32 (faket.style.default_tilt_batch's estimate); tile otherwise
    per_px = 3000
    max_tile = None
    if per_px * n * n > 0.8 * free_bytes(torch, device):
        max_tile = 2048 if n > 2048 else n // 2
    for prec in precisions:
        if prec == "tf32" and device.type != "cuda":
            rows.append({"timing": f"style {tilts} x {n}^2", "precision": prec, "skipped": "TF32 exists on CUDA only"})
            continue
        st.configure_backends(device, prec, deterministic=False, benchmark=True)
        model, _ = build_vgg("random", depth=29, seed=0, device=device)
        for attempt in range(3):  # out of device memory: halve the batch, then tile
            s = dataclasses.replace(st.PRESETS["paper"], precision=prec, max_tile=max_tile)
            eng = st.StyleTransfer(model, s, device)
            fit = st.default_tilt_batch(device, (min(n, max_tile or n),) * 2, prec)
            batch = fit if device.type == "cuda" else st.cpu_tilt_batch((n, n), prec)
            batch = max(1, batch >> attempt)
            if not warm:
                break
            try:  # one batch first (cuDNN autotuning, oneDNN kernels)
                c, i, sty = style_series(batch, n, seed=1)
                timed(
                    torch,
                    device,
                    lambda: st.stylize_series(eng, c, i, [st.Reference(sty)], tilt_batch=batch, rescale=False),
                )
                break
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                if batch == 1:
                    max_tile = 2048 if n > 2048 else n // 2
                print(f"  style {n}^2 {prec}: out of device memory; batch {batch}, tile {max_tile} next", flush=True)
        done, spent = 0, 0.0
        c, i, sty = style_series(batch, n)
        ref = st.Reference(sty)
        while done < tilts and (spent < budget or done == 0):
            k = min(batch, tilts - done)
            dt, _ = timed(
                torch,
                device,
                lambda: st.stylize_series(
                    eng, c[:k], i[:k], [ref] if k == batch else [st.Reference(sty[:k])], tilt_batch=batch, rescale=False
                ),
            )
            done, spent = done + k, spent + dt
        per = spent / done
        rows.append(
            {
                "timing": f"style {tilts} x {n}^2",
                "precision": prec,
                "seconds": per * tilts,
                "seconds_per_tilt": per,
                "tilts_timed": done,
                "tilt_batch": batch,
                "max_tile": max_tile,
                "estimated": done < tilts,
            }
        )
        print(
            f"  style {tilts} x {n}^2 {prec}: {per:.3f} s/tilt -> {per * tilts:.1f} s for {tilts} tilts "
            f"({done} timed, batch {batch}, tile {max_tile})",
            flush=True,
        )
        eng = model = None
        if device.type == "cuda":
            torch.cuda.empty_cache()


def time_projection(torch, device, rows, n, budget) -> None:
    from faket.imaging import projection as P

    dev = None if device.type == "cpu" else device
    vol = np.random.default_rng(0).random((n, n, n), dtype=np.float32)
    P.project(vol[:8, :16, :], ANGLES, device=dev)  # warm-up (compilation, CUDA context)
    dt, tilts = timed(torch, device, lambda: P.project(vol, ANGLES, device=dev))
    rows.append({"timing": f"projection {n}^3 -> 61 x {n}^2", "precision": "fp32", "seconds": dt})
    print(f"  projection {n}^3 -> 61 tilts: {dt:.2f} s", flush=True)
    vol = None
    P.reconstruct(tilts[:, :16, :], ANGLES, device=dev)
    dt, _ = timed(torch, device, lambda: P.reconstruct(tilts, ANGLES, device=dev))
    rows.append({"timing": f"reconstruction 61 x {n}^2 -> {n}^3 (bin 1, ramp)", "precision": "fp32", "seconds": dt})
    print(f"  reconstruction 61 x {n}^2 -> {n}^3: {dt:.2f} s", flush=True)


def time_picker(torch, device, rows, patch, batch, steps, budget) -> None:
    from faket.picker.train import train_picker

    rng = np.random.default_rng(0)
    n = max(2 * patch, 64)
    vol = rng.standard_normal((n, n, n)).astype(np.float32)
    mask = (rng.random(vol.shape) < 0.05).astype(np.int64) * rng.integers(1, 13, size=vol.shape)
    for prec in ("fp32", "bf16"):  # faket picker train --precision
        kw = dict(batch=batch, patch=patch, seed=0, device=device, precision=prec)
        warm = train_picker([vol], [mask], 13, steps=1, **kw)
        r = train_picker([vol], [mask], 13, steps=steps, model=warm.model, **kw)
        rows.append(
            {
                "timing": f"picker training, patch {patch}^3, batch {batch}",
                "precision": prec,
                "seconds": r.seconds,
                "steps": steps,
                "steps_per_second": steps / r.seconds,
            }
        )
        print(f"  picker training patch {patch}^3 batch {batch} {prec}: {steps / r.seconds:.2f} steps/s", flush=True)


# --------------------------------------------------------------------------------------------------
# report


def markdown(rep: dict) -> str:
    m = rep["machine"]
    head = (
        f"faket device benchmark, {m['date']}: {m.get('gpu', m['cpu'])} ({m['device']}), torch {m['torch']}"
        + (f", CUDA {m['cuda']}" if m.get("cuda") else "")
        + f", {m['threads']} CPU threads"
        + (" (--small)" if rep["small"] else "")
    )
    lines = [head, "", "| check | metric | value | tolerance | result |", "| --- | --- | --- | --- | --- |"]
    for c in rep["checks"]:
        lines.append(
            f"| {c['check']} | {c['metric']} | {c['value']:.3g} | {c['tolerance']:g} | "
            f"{'pass' if c['pass'] else '**FAIL**'} |"
        )
    lines += ["", "| timing | precision | seconds | per unit | note |", "| --- | --- | --- | --- | --- |"]
    for t in rep["timings"]:
        if "skipped" in t:
            lines.append(f"| {t['timing']} | {t['precision']} | - | - | {t['skipped']} |")
            continue
        unit = ""
        if "seconds_per_tilt" in t:
            unit = f"{t['seconds_per_tilt']:.3f} s/tilt"
        elif "steps_per_second" in t:
            unit = f"{t['steps_per_second']:.2f} steps/s"
        note = []
        if t.get("estimated"):
            note.append(f"{t['tilts_timed']} tilts timed, extrapolated")
        if t.get("max_tile"):
            note.append(f"tiles of {t['max_tile']}")
        if t.get("tilt_batch"):
            note.append(f"batch {t['tilt_batch']}")
        lines.append(f"| {t['timing']} | {t['precision']} | {t['seconds']:.2f} | {unit} | {', '.join(note)} |")
    lines += ["", f"total {rep['seconds']:.0f} s; checks {'all passed' if rep['passed'] else 'FAILED'}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:I or cpu (default cuda)")
    ap.add_argument("--small", action="store_true", help="small sizes: the script's own test, seconds on a CPU")
    ap.add_argument("--out", default="device-results", metavar="DIR", help="where device.json / device.md go")
    ap.add_argument("--budget", type=float, default=30.0, metavar="S", help="seconds per style timing case")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--no-timings", action="store_true", help="checks only")
    a = ap.parse_args(argv)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            f"bench/device.py: error: --device {a.device}: CUDA is not available here "
            "(use --device cpu --small to test the script)",
            file=sys.stderr,
        )
        return 2
    t0 = time.perf_counter()
    rep = {"format": 1, "small": a.small, "machine": machine(torch, device), "checks": [], "timings": []}
    print(f"== checks: {device} against the CPU ==", flush=True)
    run_checks(torch, device, rep["checks"], 64 if a.small else 96)
    if not a.no_timings:
        print(f"== timings on {device} ==", flush=True)
        precs = ["fp32", "tf32", "bf16"]
        sizes = [64] if a.small else [1024, 4096]
        for n in sizes:
            time_style(torch, device, rep["timings"], n, precs, a.budget, tilts=2 if a.small else 61, warm=not a.small)
        time_projection(torch, device, rep["timings"], 64 if a.small else 1024, a.budget)
        if a.small:
            time_picker(torch, device, rep["timings"], 16, 2, 1, a.budget)
        else:
            time_picker(torch, device, rep["timings"], 56, 25, 20, a.budget)
    rep["seconds"] = time.perf_counter() - t0
    rep["passed"] = all(c["pass"] for c in rep["checks"])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "device.json").write_text(json.dumps(rep, indent=1))
    (out / "device.md").write_text(markdown(rep))
    print(f"wrote {out / 'device.json'} and {out / 'device.md'} ({rep['seconds']:.0f} s)")
    return 0 if rep["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
