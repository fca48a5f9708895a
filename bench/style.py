"""Benchmark of `faket style` (paper setting, random VGG weights, 2 threads) against a plain per-tilt loop.

    .venv/bin/python bench/style.py                         # 256^2 and 512^2, fp32 and bf16, cache, tiling
    .venv/bin/python bench/style.py --tilts 61 --sizes 256  # the full 61-tilt series (slow on a busy machine)

What is measured (all in one process, same inputs, steady state: a warm-up batch of each shape first)
- PLAIN: a straightforward one-tilt-at-a-time re-implementation of the paper's algorithm: torchvision's
  VGG-19 features (NCHW, 3 input channels, ImageNet normalisation, replicate padding on the first conv),
  per tilt: style features + Gram targets, content features, one forward/backward, torch.optim.Adam step,
  clamp, EMA. Nothing reused between tilts. fp32.
- FAKET: `faket.style.stylize_series` (folded first conv, channels_last, --tilt-batch tilts per pass,
  targets under inference mode), without the extra forward for the output's loss (the plain loop does not
  compute it either; with it, add one forward per tilt: see the "+final loss" row), fp32 and bf16.
- seconds per tilt = wall time / tilts (warm-up excluded); speed-up = PLAIN / FAKET.
- GFLOP/s: the nominal work per tilt (style forward to relu5_1 + content forward to relu2_2 + image forward
  to relu5_1 + input-gradient backward ~ one more forward; conv FLOPs, 2 per MAC) / seconds per tilt,
  against a 2048^3 torch matmul of the same dtype measured in the same run.
- dataset of 4 tomograms with one reference: 4 runs with --style-cache (1 cold + 3 warm) vs 4 x a run
  without cache.
- bf16 cost: relative RMS difference of the bf16 and fp32 outputs ([0, 1] units, / std of the fp32 output)
  and the style loss (fp32 model) of both outputs.
- tiled vs untiled at 512^2 (--max-tile 480, default halo 160): relative RMS difference of the outputs.
The machine may be shared: timings are noisy; extrapolations from fewer tilts are labelled as such.
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
    """One tilt at a time, everything recomputed, torchvision VGG-19 as is (NCHW, 3 channels)."""

    def __init__(self, sd, style_layers=(1, 6, 11, 20, 29), style_w=(256, 64, 16, 4, 1), content_layers=(8,),
                 lr=0.15, decay=0.99):
        import torch
        from torchvision.models.vgg import cfgs, make_layers

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
    from faket.vgg import _KINDS

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
    return reps * 2 * n ** 3 / (time.perf_counter() - t) / 1e9


# ---------------------------------------------------------------------------------------------------


def faket_run(model, content, noisy, style, precision, batch, *, cache=None, final=False, max_tile=None,
              settings=None):
    from faket import style as st

    s = settings or st.StyleSettings()
    s.precision, s.final_loss, s.max_tile = precision, final, max_tile
    eng = st.StyleTransfer(model, s)
    ref = st.Reference(style, index=np.arange(style.shape[0]))
    t = time.perf_counter()
    out, rec = st.stylize_series(eng, content, noisy, [ref], tilt_batch=batch, cache=cache,
                                 weights_key="bench", rescale=False)
    return time.perf_counter() - t, out, rec


def main(argv=None):
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--tilts", type=int, default=0, help="tilts per measurement (default: 8 at 256, 4 at 512)")
    ap.add_argument("--batch", type=int, default=0, help="tilt batch (default: the CLI's CPU default per precision)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-tiling", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from faket.style import StyleSettings
    from faket.vgg import build_vgg, load_vgg19_state

    sd, _ = load_vgg19_state("random", depth=29, seed=0)
    model = build_vgg("random", depth=29, seed=0)[0]
    plain = Plain(sd)
    mm = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(f"threads {torch.get_num_threads()}; matmul 2048^3: fp32 {mm['fp32']:.0f} GFLOP/s, "
          f"bf16 {mm['bf16']:.0f} GFLOP/s (re-measured before each size; the best is the reference)")
    lines = []
    for n in [int(v) for v in args.sizes.split(",")]:
        T = args.tilts or (8 if n <= 256 else 4)
        content, noisy, style = make_series(T + 4, n)
        wc, wn, ws = content[:4], noisy[:4], style[:4]   # warm-up
        c, z, s = content[4:], noisy[4:], style[4:]
        cu, zu, su = unit(c), unit(z), unit(s)
        plain.tilt(unit(wc)[0], unit(ws)[0], unit(wn)[0])
        t = time.perf_counter()
        for i in range(T):
            plain.tilt(cu[i], su[i], zu[i])
        t_plain = (time.perf_counter() - t) / T
        W = work_per_tilt(n)
        for dt_ in ("fp32", "bf16"):     # the machine may be shared: keep the best matmul rate seen
            mm[dt_] = max(mm[dt_], matmul_gflops(torch.float32 if dt_ == "fp32" else torch.bfloat16))
        print(f"\n== {n}x{n}, {T} tilts (per-tilt times; a 61-tilt series = 61 x these) ==")
        print(f"PLAIN loop fp32          {t_plain:7.3f} s/tilt  {W / t_plain / 1e9:6.0f} GFLOP/s "
              f"({W / t_plain / 1e9 / mm['fp32']:.0%} of fp32 matmul)")
        outs = {}
        for prec in ("fp32", "bf16"):
            from faket.style import cpu_tilt_batch

            bt = args.batch or cpu_tilt_batch((n, n), prec)
            faket_run(model, wc[:bt], wn[:bt], ws[:bt], prec, bt)
            dt, out, rec = faket_run(model, c, z, s, prec, bt)
            outs[prec] = (out, rec)
            tpt = dt / T
            eff = W / tpt / 1e9
            print(f"FAKET {prec} batch {bt}     {tpt:7.3f} s/tilt  {eff:6.0f} GFLOP/s "
                  f"({eff / mm[prec]:.0%} of {prec} matmul)  speed-up vs PLAIN {t_plain / tpt:5.2f}x")
            lines.append((n, prec, tpt, t_plain / tpt, W))
            if prec == "fp32":
                dtf, _, _ = faket_run(model, c, z, s, prec, bt, final=True)
                print(f"FAKET fp32 +final loss    {dtf / T:7.3f} s/tilt  (one more forward per tilt for the sidecar)")
            # dataset: 4 tomograms, one reference, cache
            with tempfile.TemporaryDirectory() as d:
                from faket.style import GramCache

                times = []
                for k in range(4):
                    ck = np.roll(c, 7 * k, axis=2)
                    dtk, _, _ = faket_run(model, ck, z, s, prec, bt, cache=GramCache(d))
                    times.append(dtk)
                ratio = sum(times) / (4 * dt)
                print(f"  4 tomograms, 1 reference, --style-cache: {sum(times):.1f} s vs 4 independent "
                      f"{4 * dt:.1f} s -> {ratio:.2f}x (cold {times[0]:.1f} s, warm {np.mean(times[1:]):.1f} s)")
        # bf16 quality cost (same inputs), style loss measured with the fp32 model
        from faket import style as st

        o32, r32 = outs["fp32"]
        o16, _ = outs["bf16"]
        rel = float(np.sqrt(np.mean((o16 - o32) ** 2)) / o32.std())
        eng = st.StyleTransfer(model, StyleSettings())
        ref = st.Reference(s, index=np.arange(T))
        tg = {l: torch.stack([eng.reference_grams(ref, j, 1.0)[l] for j in range(T)]) for l in eng.style_layers}
        cc = eng._tensor(cu)
        cf = eng.content_features(cc)
        _, sl32, _ = eng.loss_and_grad(eng._tensor(o32), cc, cf, tg, need_grad=False)
        _, sl16, _ = eng.loss_and_grad(eng._tensor(o16), cc, cf, tg, need_grad=False)
        s0 = np.mean(r32["per_tilt"]["style_loss_initial"])
        print(f"bf16 vs fp32 output: relative RMS difference {rel:.4f}; style loss (fp32 model) "
              f"init {s0:.5f} -> fp32 {float(sl32.mean()):.5f}, bf16 {float(sl16.mean()):.5f} "
              f"(drop {s0 - float(sl32.mean()):.5f} vs {s0 - float(sl16.mean()):.5f})")
        if n >= 512 and not args.no_tiling:
            t = time.perf_counter()
            _, ot, _ = faket_run(model, c[:1], z[:1], s[:1], "fp32", 1, max_tile=480)
            tt = time.perf_counter() - t
            _, ou, _ = faket_run(model, c[:1], z[:1], s[:1], "fp32", 1)   # same one-tilt series, untiled
            rel_t = float(np.sqrt(np.mean((ot - ou) ** 2)) / ou.std())
            print(f"tiled (--max-tile 480, default halo 160: 3x3 tiles) vs untiled at {n}^2: relative RMS difference {rel_t:.4%} "
                  f"({tt:.1f} s for the tile)")
    for dt_ in ("fp32", "bf16"):
        mm[dt_] = max(mm[dt_], matmul_gflops(torch.float32 if dt_ == "fp32" else torch.bfloat16))
    print(f"\nbest matmul rates seen: fp32 {mm['fp32']:.0f}, bf16 {mm['bf16']:.0f} GFLOP/s")
    lines = [(n, prec, tpt, sp, W_ / tpt / 1e9 / mm[prec]) for n, prec, tpt, sp, W_ in lines]
    print("\nsummary (goal: fp32 >= 1.3x, bf16 >= 4x vs PLAIN; efficiency fp32 >= 75%, bf16 >= 45% of matmul)")
    for n, prec, tpt, sp, eff in lines:
        print(f"  {n}^2 {prec}: {tpt:.3f} s/tilt, {sp:.2f}x, {eff:.0%} of matmul")


if __name__ == "__main__":
    main()
