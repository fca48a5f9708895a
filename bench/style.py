"""Benchmark of `faket style` (paper setting, random VGG weights, 2 threads) against a plain per-tilt loop.

    .venv/bin/python bench/style.py                       # whole process (61 x 256^2, 13 x 512^2) + steady state
    .venv/bin/python bench/style.py --sizes 256 --repeats 3 --no-steady

WHOLE PROCESS (the headline figure): the `faket style` command as a user runs it (a subprocess: start-up,
reading the MRCs, reference Gram targets, styling, rescaling, writing the MRC, .tlt and provenance sidecar)
against bench/plain_style.py, a plain ~40-line one-tilt-at-a-time torch loop of the same algorithm (no
torchvision), also a whole process, on the same files in the same run; runs alternate and repeat
(--repeats), the ratio plain / faket of each repeat and the machine load (uptime) are printed.
`faket style --preset paper` with its defaults (no --final-loss), fp32 and bf16; PLAIN is fp32.

STEADY STATE (all in one process, same inputs, a warm-up batch of each shape first)
- PLAIN: the same plain algorithm in-process (torchvision VGG-19 features, NCHW, 3 input channels, ImageNet
  normalisation, replicate padding on the first conv, torch.optim.Adam, EMA), nothing reused between tilts.
- FAKET: `faket.style.stylize_series` (folded first conv, channels_last, --tilt-batch tilts per pass,
  targets under inference mode), fp32 and bf16; "+final loss" = with the opt-in output-loss forward.
- seconds per tilt = wall time / tilts (warm-up excluded); speed-up = PLAIN / FAKET.
- GFLOP/s: the nominal work per tilt (style forward to relu5_1 + content forward to relu2_2 + image forward
  to relu5_1 + input-gradient backward ~ one more forward; conv FLOPs, 2 per MAC) / seconds per tilt,
  against a 2048^3 torch matmul of the same dtype measured in the same run.
- with --extras: a dataset of 4 tomograms with one reference (4 runs with a Gram cache: 1 cold + 3 warm) vs
  4 runs without; bf16 vs fp32 outputs; tiled vs untiled at 512^2 (--max-tile 480, default halo 160).
The machine may be shared: timings are noisy; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------------
# inputs


def make_series(T, n, seed=0):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    base = np.zeros((n, n), np.float32)
    for _ in range(80):
        cy, cx, r = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(2, 10) * n / 256
        base -= np.clip(r * r - (yy - cy) ** 2 - (xx - cx) ** 2, 0, None) ** 0.5
    content = np.stack([np.roll(base, t, axis=1) for t in range(T)]).astype(np.float32)
    content = gaussian_filter(content, (0, 1, 1))
    content = (content - content.mean()) / content.std()
    noisy = content + 2.0 * rng.normal(size=content.shape).astype(np.float32)
    content = content + 0.5 * rng.normal(size=content.shape).astype(np.float32)
    g = rng.gamma(2.0, size=(T, n, n)).astype(np.float32)
    style = np.stack([gaussian_filter(x, 1.0) + 0.3 * x for x in g]).astype(np.float32)
    return content, noisy, style


# ---------------------------------------------------------------------------------------------------
# the plain loop


class Plain:
    """One tilt at a time, everything recomputed, torchvision VGG-19 as is (NCHW, 3 channels); the paper's
    setting (faket's StyleSettings defaults)."""

    def __init__(self, sd):
        import torch
        from torchvision.models.vgg import cfgs, make_layers

        from faket.style.settings import PRESETS

        p = PRESETS["paper"]
        style_layers, style_w, content_layers = p.style_layers, p.style_layer_weights, p.content_layers
        lr, decay = p.step_size, p.avg_decay
        self.torch = torch
        net = make_layers(cfgs["E"])[: max(style_layers) + 1]
        net.load_state_dict(sd, strict=False)
        net[0].padding_mode = "replicate"
        self.net = net.eval().requires_grad_(False)
        self.sl, self.cl = list(style_layers), list(content_layers)
        s = sum(style_w)
        self.sw = [w / s for w in style_w]
        self.lr, self.decay = lr, decay
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def feats(self, x, layers):
        y = (x.repeat(1, 3, 1, 1) - self.mean) / self.std
        out = {}
        for i, m in enumerate(self.net):
            y = m(y)
            if i in layers:
                out[i] = y
            if i >= max(layers):
                break
        return out

    @staticmethod
    def gram(f):
        b, c, h, w = f.shape
        m = f.reshape(b, c, h * w)
        return m @ m.transpose(1, 2) / (h * w)

    @staticmethod
    def smse(d):
        return d.pow(2).sum() / (d.abs().sum() + 1e-8)

    def tilt(self, content, style, init):
        torch = self.torch
        c = torch.as_tensor(content)[None, None]
        s = torch.as_tensor(style)[None, None]
        x = torch.as_tensor(init)[None, None].clone()
        sf = self.feats(s, self.sl)
        targets = {l: self.gram(sf[l]) for l in self.sl}
        cf = self.feats(c, self.cl)
        x.requires_grad_(True)
        opt = torch.optim.Adam([x], lr=self.lr)
        biased = (1 - self.decay) * x.detach().clone()
        accum = self.decay
        f = self.feats(x, sorted(set(self.sl) | set(self.cl)))
        loss = sum(w * self.smse(self.gram(f[l]) - targets[l]) for l, w in zip(self.sl, self.sw))
        loss = loss + sum(self.smse(f[l] - cf[l]) for l in self.cl)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
            accum *= self.decay
            biased = biased * self.decay + (1 - self.decay) * x
        return (biased / (1 - accum))[0, 0].numpy()


def unit(a):
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# FLOPs and matmul


def conv_flops(H, W, depth):
    from faket.style.vgg import _KINDS

    h, w, total = H, W, 0.0
    for kind, cin, cout in _KINDS[: depth + 1]:
        if kind == "conv":
            total += 2.0 * cin * cout * 9 * h * w
        elif kind == "pool":
            h, w = h // 2, w // 2
    return total


def work_per_tilt(n, with_style=True, final=False):
    f29, f8 = conv_flops(n, n, 29), conv_flops(n, n, 8)
    return (f29 if with_style else 0) + f8 + 2 * f29 + (f29 if final else 0)


def matmul_gflops(dtype, n=2048, reps=6):
    import torch

    a = torch.rand(n, n).to(dtype)
    b = torch.rand(n, n).to(dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return reps * 2 * n**3 / (time.perf_counter() - t) / 1e9


# ---------------------------------------------------------------------------------------------------


def faket_run(model, content, noisy, style, precision, batch, *, cache=None, final=False, max_tile=None, settings=None):
    import dataclasses

    from faket import style as st

    s = dataclasses.replace(settings or st.PRESETS["paper"], precision=precision, final_loss=final, max_tile=max_tile)
    eng = st.StyleTransfer(model, s)
    ref = st.Reference(style, index=np.arange(style.shape[0]))
    t = time.perf_counter()
    out, rec = st.stylize_series(
        eng, content, noisy, [ref], tilt_batch=batch, cache=cache, weights_key="bench", rescale=False
    )
    return time.perf_counter() - t, out, rec


# ---------------------------------------------------------------------------------------------------
# whole process


def load() -> str:
    import os

    return "load %.1f %.1f %.1f" % os.getloadavg()


def write_inputs(d: Path, T: int, n: int):
    """content / noisy / style MRCs (+ equal .tlt angles, so the angle matching is the identity) and the
    random VGG-19 weights faket builds with --weights random --seed 0, as a state dict for PLAIN."""
    import mrcfile
    import torch

    from faket.formats.tiltmeta import write_tlt
    from faket.style.vgg import load_vgg19_state

    content, noisy, style = make_series(T, n)
    angles = np.linspace(-60, 60, T)
    paths = {}
    for name, a in (("content", content), ("noisy", noisy), ("style", style)):
        paths[name] = d / f"{name}_{n}.mrc"
        with mrcfile.new(paths[name], overwrite=True) as m:
            m.set_data(a)
            m.voxel_size = 10.0
        write_tlt(paths[name].with_suffix(".tlt"), angles)
    paths["weights"] = d / "vgg_random_seed0.pth"
    if not paths["weights"].exists():
        torch.save(load_vgg19_state("random", depth=29, seed=0)[0], paths["weights"])
    return paths


def timed(cmd, env) -> float:
    import subprocess

    t = time.perf_counter()
    r = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr[-2000:]}")
    return dt


def whole_process(sizes, tilts, repeats, threads, mm):
    """faket style (a subprocess, as a user runs it) vs bench/plain_style.py, alternating, same files.
    ``mm``: the best matmul rates (GFLOP/s per precision) measured in this process, updated between runs."""
    import os

    import mrcfile
    import torch

    env = dict(
        os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS=str(threads)
    )
    py = sys.executable
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for n in sizes:
            T = tilts.get(n, 61 if n <= 256 else 13)
            p = write_inputs(d, T, n)
            runs = {
                "PLAIN fp32": [
                    py,
                    ROOT / "bench" / "plain_style.py",
                    p["content"],
                    p["noisy"],
                    p["style"],
                    p["weights"],
                    d / "plain.mrc",
                    threads,
                ],
            }
            for prec in ("fp32", "bf16"):
                runs[f"faket {prec}"] = [
                    py,
                    "-m",
                    "faket",
                    "style",
                    p["content"],
                    "--style",
                    p["style"],
                    "--init",
                    p["noisy"],
                    "-o",
                    d / f"faket_{prec}.mrc",
                    "--weights",
                    "random",
                    "--seed",
                    "0",
                    "--preset",
                    "paper",
                    "--precision",
                    prec,
                    "--threads",
                    threads,
                    "-q",
                ]
            print(f"\n== whole process, {T} tilts of {n}^2, {threads} threads ==")
            times = {k: [] for k in runs}
            names = list(runs)
            for r in range(repeats):
                order = names[r % len(names) :] + names[: r % len(names)]  # rotate the order per repeat
                before = load()
                for k in order:
                    times[k].append(timed(runs[k], env))
                for dt_ in ("fp32", "bf16"):  # the machine may be shared: keep the best rate seen
                    mm[dt_] = max(mm[dt_], matmul_gflops(torch.float32 if dt_ == "fp32" else torch.bfloat16))
                print(
                    f"  repeat {r + 1}: "
                    + ", ".join(f"{k} {times[k][-1]:.1f} s" for k in names)
                    + f"  -> fp32 {times['PLAIN fp32'][-1] / times['faket fp32'][-1]:.2f}x, "
                    f"bf16 {times['PLAIN fp32'][-1] / times['faket bf16'][-1]:.2f}x  ({before}; after: {load()})"
                )
            a = mrcfile.read(d / "plain.mrc")
            b = mrcfile.read(d / "faket_fp32.mrc")
            corr = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
            print(
                f"  sanity: PLAIN vs faket fp32 outputs correlate {corr:.4f} (one Adam step ~ 0.15 sign(g): "
                "rounding flips pixels whose gradient is ~0)"
            )
            W = T * work_per_tilt(n)  # nominal conv work of the series (faket skips part of it: folded conv)
            for prec in ("fp32", "bf16"):
                ratios = [pl / fk for pl, fk in zip(times["PLAIN fp32"], times[f"faket {prec}"])]
                t_fk = float(np.median(times[f"faket {prec}"]))
                frac = W / min(times[f"faket {prec}"]) / 1e9 / mm[prec]
                print(
                    f"  faket {prec}: {W / 1e12:.1f} TFLOP nominal in {min(times[f'faket {prec}']):.1f} s (best "
                    f"repeat, whole process) = {frac:.0%} of the {prec} matmul rate ({mm[prec]:.0f} GFLOP/s); "
                    f"PLAIN fp32 {W / min(times['PLAIN fp32']) / 1e9 / mm['fp32']:.0%} of fp32"
                )
                rows.append((n, T, prec, float(np.median(times["PLAIN fp32"])), t_fk, ratios, frac))
    return rows


# ---------------------------------------------------------------------------------------------------
# steady state


def steady_state(args, torch, mm):
    from faket import style as st
    from faket.style.vgg import build_vgg, load_vgg19_state

    sd, _ = load_vgg19_state("random", depth=29, seed=0)
    model = build_vgg("random", depth=29, seed=0)[0]
    plain = Plain(sd)
    print(
        f"\nsteady state: threads {torch.get_num_threads()}; matmul 2048^3: fp32 {mm['fp32']:.0f} GFLOP/s, "
        f"bf16 {mm['bf16']:.0f} GFLOP/s (re-measured before each size; the best is the reference)"
    )
    lines = []
    for n in args.sizes:
        T = args.steady_tilts or (8 if n <= 256 else 4)
        content, noisy, style = make_series(T + 4, n)
        wc, wn, ws = content[:4], noisy[:4], style[:4]  # warm-up
        c, z, s = content[4:], noisy[4:], style[4:]
        cu, zu, su = unit(c), unit(z), unit(s)
        plain.tilt(unit(wc)[0], unit(ws)[0], unit(wn)[0])
        t = time.perf_counter()
        for i in range(T):
            plain.tilt(cu[i], su[i], zu[i])
        t_plain = (time.perf_counter() - t) / T
        W = work_per_tilt(n)
        for dt_ in ("fp32", "bf16"):  # the machine may be shared: keep the best matmul rate seen
            mm[dt_] = max(mm[dt_], matmul_gflops(torch.float32 if dt_ == "fp32" else torch.bfloat16))
        print(f"\n== steady state, {n}x{n}, {T} tilts ({load()}) ==")
        print(
            f"PLAIN loop fp32          {t_plain:7.3f} s/tilt  {W / t_plain / 1e9:6.0f} GFLOP/s "
            f"({W / t_plain / 1e9 / mm['fp32']:.0%} of fp32 matmul)"
        )
        outs = {}
        for prec in ("fp32", "bf16"):
            bt = args.batch or st.cpu_tilt_batch((n, n), prec)
            faket_run(model, wc[:bt], wn[:bt], ws[:bt], prec, bt)
            dt, out, rec = faket_run(model, c, z, s, prec, bt)
            outs[prec] = (out, rec)
            tpt = dt / T
            eff = W / tpt / 1e9
            print(
                f"FAKET {prec} batch {bt}     {tpt:7.3f} s/tilt  {eff:6.0f} GFLOP/s "
                f"({eff / mm[prec]:.0%} of {prec} matmul)  speed-up vs PLAIN {t_plain / tpt:5.2f}x"
            )
            lines.append((n, prec, tpt, t_plain / tpt, W))
            if prec == "fp32":
                dtf, _, _ = faket_run(model, c, z, s, prec, bt, final=True)
                print(f"FAKET fp32 --final-loss  {dtf / T:7.3f} s/tilt  (opt-in: one more forward per tilt)")
            if args.extras:  # dataset: 4 tomograms, one reference, cache
                with tempfile.TemporaryDirectory() as d:
                    from faket.style.cache import GramCache

                    times = []
                    for k in range(4):
                        ck = np.roll(c, 7 * k, axis=2)
                        dtk, _, _ = faket_run(model, ck, z, s, prec, bt, cache=GramCache(d))
                        times.append(dtk)
                    ratio = sum(times) / (4 * dt)
                    print(
                        f"  4 tomograms, 1 reference, --style-cache: {sum(times):.1f} s vs 4 independent "
                        f"{4 * dt:.1f} s -> {ratio:.2f}x (cold {times[0]:.1f} s, warm {np.mean(times[1:]):.1f} s)"
                    )
        if args.extras:
            # bf16 quality cost (same inputs), style loss measured with the fp32 model
            o32, r32 = outs["fp32"]
            o16, _ = outs["bf16"]
            rel = float(np.sqrt(np.mean((o16 - o32) ** 2)) / o32.std())
            eng = st.StyleTransfer(model, st.StyleSettings())
            ref = st.Reference(s, index=np.arange(T))
            tg = {l: torch.stack([eng.reference_grams(ref, j, 1.0)[l] for j in range(T)]) for l in eng.style_layers}
            cc = eng._tensor(cu)
            cf = eng.content_features(cc)
            _, sl32, _ = eng.loss_and_grad(eng._tensor(o32), cc, cf, tg, need_grad=False)
            _, sl16, _ = eng.loss_and_grad(eng._tensor(o16), cc, cf, tg, need_grad=False)
            s0 = np.mean(r32["per_tilt"]["style_loss_initial"])
            print(
                f"bf16 vs fp32 output: relative RMS difference {rel:.4f}; style loss (fp32 model) "
                f"init {s0:.5f} -> fp32 {float(sl32.mean()):.5f}, bf16 {float(sl16.mean()):.5f}"
            )
            if eng.s.iterations == eng.s.initial_iterations == 1:
                # one Adam step moves a pixel by lr * g / (|g| + eps) ~ lr * sign(g): the outputs differ only
                # where the bf16 gradient's sign differs from the fp32 one (or where the clamp to [0, 1] hides it)
                flips = float(np.mean(np.abs(o16 - o32) > 1e-4))
                print(
                    f"bf16 vs fp32: the step goes the other way at {flips:.1%} of the pixels (one Adam step: "
                    "the output depends on the gradient's sign only)"
                )
            if n >= 512:
                t = time.perf_counter()
                _, ot, _ = faket_run(model, c[:1], z[:1], s[:1], "fp32", 1, max_tile=480)
                tt = time.perf_counter() - t
                _, ou, _ = faket_run(model, c[:1], z[:1], s[:1], "fp32", 1)  # same one-tilt series, untiled
                rel_t = float(np.sqrt(np.mean((ot - ou) ** 2)) / ou.std())
                print(
                    f"tiled (--max-tile 480, default halo 160: 3x3 tiles) vs untiled at {n}^2: relative RMS "
                    f"difference {rel_t:.4%} ({tt:.1f} s for the tile)"
                )
    for dt_ in ("fp32", "bf16"):
        mm[dt_] = max(mm[dt_], matmul_gflops(torch.float32 if dt_ == "fp32" else torch.bfloat16))
    print(f"best matmul rates seen: fp32 {mm['fp32']:.0f}, bf16 {mm['bf16']:.0f} GFLOP/s")
    return [(n, prec, tpt, sp, W_ / tpt / 1e9 / mm[prec]) for n, prec, tpt, sp, W_ in lines]


def main(argv=None):
    import platform

    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument(
        "--tilts",
        default="256:61,512:13",
        metavar="N:T,...",
        help="tilts of the whole-process series per size (default: 256:61,512:13)",
    )
    ap.add_argument("--repeats", type=int, default=2, help="whole-process repeats (default: 2)")
    ap.add_argument("--steady-tilts", type=int, default=0, help="steady-state tilts (default: 8 at 256, 4 at 512)")
    ap.add_argument("--batch", type=int, default=0, help="steady-state tilt batch (default: the CLI's CPU default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-whole", action="store_true", help="skip the whole-process runs")
    ap.add_argument("--no-steady", action="store_true", help="skip the steady-state runs")
    ap.add_argument("--extras", action="store_true", help="steady state: also the cache, bf16 and tiling checks")
    args = ap.parse_args(argv)
    args.sizes = [int(v) for v in args.sizes.split(",")]
    tilts = {int(k): int(v) for k, v in (kv.split(":") for kv in args.tilts.split(",") if kv)}
    torch.set_num_threads(args.threads)
    flags = set(open("/proc/cpuinfo").read().split()) if Path("/proc/cpuinfo").exists() else set()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.processor() or platform.machine()}; "
        f"{os_cpus()} CPUs; bf16 hardware: {', '.join(sorted(flags & {'amx_bf16', 'avx512_bf16'})) or 'none'}; "
        f"torch {torch.__version__}; {load()}"
    )
    mm = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(
        f"matmul 2048^3 on {args.threads} threads: fp32 {mm['fp32']:.0f}, bf16 {mm['bf16']:.0f} GFLOP/s "
        "(re-measured between runs; the best is the reference)"
    )
    whole = [] if args.no_whole else whole_process(args.sizes, tilts, args.repeats, args.threads, mm)
    steady = [] if args.no_steady else steady_state(args, torch, mm)
    print("\nsummary")
    amx = "amx_bf16" in flags
    for n, T, prec, t_plain, t_faket, ratios, frac in whole:
        goal = "1.2" if prec == "fp32" else ("2.5" if amx else "2.0")
        print(
            f"  whole process {n}^2 x {T} tilts {prec}: PLAIN {t_plain:.1f} s, faket {t_faket:.1f} s (medians) "
            f"-> {np.median(ratios):.2f}x (repeats: {', '.join(f'{r:.2f}' for r in ratios)}; "
            f"goal {goal}x); {frac:.0%} of the {prec} matmul rate"
        )
    for n, prec, tpt, sp, eff in steady:
        print(f"  steady state {n}^2 {prec}: {tpt:.3f} s/tilt, {sp:.2f}x, {eff:.0%} of matmul")


def os_cpus() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


if __name__ == "__main__":
    main()
