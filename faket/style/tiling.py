"""Exact tiling of the style loss and its gradient for large tilts (used by :class:`faket.style.StyleTransfer`).

A tilt is split into cores that partition it, each processed in a window of ``halo`` pixels of context.
- Pass 1 runs every window without gradient and sums the Gram matrices ``F F^T`` and the content-loss sums
  ``sum |d|``, ``sum d^2`` over the cores (exact when the halo covers the receptive-field radius).
- The global losses give ``dL/dG`` per style layer and the content term's coefficients.
- Pass 2 back-propagates, per window, a surrogate with the same gradient (``<dL/dG, F F^T> / N`` and the
  content term's ``dL/dF . F``) and keeps the gradient on the core.
Cores partition the tilt, so there are no seams; memory is bounded by the window size. A halo of twice the
receptive-field radius of the deepest layer makes the tiled gradient equal to the whole tilt's.
"""

from __future__ import annotations

from faket.style.losses import EPS, _flat_features, gram_sum, per_sample_sum, scaled_mse, tv_loss, tv_map
from faket.style.vgg import downsampling

__all__ = ["tile_layout", "tile_grid", "tiled_grams", "tiled_loss_and_grad"]


def tile_layout(n: int, max_tile: int, halo: int, align: int) -> list[tuple[int, int, int, int]]:
    """Split ``[0, n)`` into cores of about ``max_tile - 2*halo`` (multiples of ``align``) with windows
    ``[core - halo, core + halo]`` clipped to ``[0, n)``. Returns ``(w0, w1, c0, c1)`` tuples."""
    core = max(align, ((max_tile - 2 * halo) // align) * align)
    out = []
    c0 = 0
    while c0 < n:
        c1 = min(n, c0 + core)
        if n - c1 < align:  # avoid a sliver at the end
            c1 = n
        out.append((max(0, c0 - halo), min(n, c1 + halo), c0, c1))
        c0 = c1
    return out


def tile_grid(hw: tuple[int, int], max_tile: int | None, halo: int, align: int):
    """The tiles ``((wy0, wy1, cy0, cy1), (wx0, wx1, cx0, cx1))`` of an (H, W) image, or None when it fits."""
    if max_tile is None or (hw[0] <= max_tile and hw[1] <= max_tile):
        return None
    ty = tile_layout(hw[0], max_tile, halo, align)
    tx = tile_layout(hw[1], max_tile, halo, align)
    return [(a, b) for a in ty for b in tx]


def _window(img, tile):
    (wy0, wy1, _, _), (wx0, wx1, _, _) = tile
    return img[..., wy0:wy1, wx0:wx1]


def _core_slice(ds: int, w0: int, c0: int, c1: int) -> slice:
    """Feature-space slice (downsampling ``ds``) of the core ``[c0, c1)`` of a window starting at ``w0``."""
    return slice((c0 - w0) // ds, c1 // ds - w0 // ds)


def _core(feat, layer: int, tile):
    """The core of a window's features of ``layer``."""
    (wy0, _, cy0, cy1), (wx0, _, cx0, cx1) = tile
    ds = downsampling(layer)
    return feat[..., _core_slice(ds, wy0, cy0, cy1), _core_slice(ds, wx0, cx0, cx1)]


def _positions(hw, layer: int) -> int:
    ds = downsampling(layer)
    return (hw[0] // ds) * (hw[1] // ds)


def tiled_grams(model, img01, layers, tiles, amp) -> dict:
    """Gram matrices (B, C, C) of ``layers`` of the whole ``img01`` (B, 1, H, W), window by window (pass 1
    only; call under inference mode). ``amp()`` gives the autocast context."""
    acc = {}
    for t in tiles:
        with amp():
            f = model(_window(img01, t), layers)
        for l in layers:
            g = gram_sum(_core(f[l], l, t))
            acc[l] = g if l not in acc else acc[l] + g
    return {l: acc[l] / _positions(img01.shape[-2:], l) for l in layers}


def tiled_loss_and_grad(engine, x, content01, targets, tiles, need_grad: bool = True):
    """:meth:`StyleTransfer.loss_and_grad` of a tiled image: per-sample ``(total, style)`` and
    ``d(sum total)/dx`` (None without ``need_grad``)."""
    # lazy: torch
    import torch

    model, amp = engine.model, engine._amp
    style_layers, content_layers = engine.style_layers, engine.content_layers
    hw = tuple(x.shape[-2:])
    b, dev = x.shape[0], x.device

    def content_feats(t):
        if not content_layers:
            return {}
        with amp():
            return model(_window(content01, t), content_layers)

    # pass 1: Gram sums and content-loss sums over the cores
    gs = {l: 0 for l in style_layers}
    s1 = {l: torch.zeros(b, device=dev) for l in content_layers}
    s2 = {l: torch.zeros(b, device=dev) for l in content_layers}
    with torch.inference_mode():
        for t in tiles:
            with amp():
                f = model(_window(x, t), engine.all_layers)
            fc = content_feats(t)
            for l in style_layers:
                gs[l] = gs[l] + gram_sum(_core(f[l], l, t))
            for l in content_layers:
                d = (_core(f[l], l, t).float() - _core(fc[l], l, t).float()).flatten(1)
                s1[l] += per_sample_sum(d.abs())
                s2[l] += per_sample_sum(d.pow(2))
    # global losses, dL/dG and the content term's coefficients
    style = torch.zeros(b, device=dev)
    gbar = {}
    with torch.enable_grad():
        for l, w in zip(style_layers, engine.sw):
            G = (gs[l] / _positions(hw, l)).detach().requires_grad_(True)
            li = w * scaled_mse(G - targets[l])
            (gbar[l],) = torch.autograd.grad(li.sum(), G)
            style = style + li.detach()
    total = style.clone()
    cterm = {}
    for l, w in zip(content_layers, engine.cw):
        S1 = s1[l] + EPS
        total = total + w * s2[l] / S1
        cterm[l] = (w, S1, s2[l])
    tvw = engine.s.tv_weight
    if tvw:
        total = total + tvw * tv_loss(x)
    if not need_grad:
        return total, style, None
    # pass 2: a surrogate with the same gradient, kept on each core
    grad = torch.zeros_like(x)
    for t in tiles:
        with torch.inference_mode():
            fc = {l: v.clone() for l, v in content_feats(t).items()}
        xt = _window(x, t).detach().clone().requires_grad_(True)
        with amp():
            f = model(xt, engine.all_layers)
        sur = torch.zeros((), device=dev)
        for l in style_layers:
            m = _flat_features(f[l])
            with torch.autocast(device_type=dev.type, enabled=False):
                # d/dM of <Gbar, M^T M> / N is 2 M Gbar / N = dL/dM (Gbar = dL/dG is symmetric)
                sur = sur + ((m @ gbar[l]) * m).sum() / _positions(hw, l)
        for l, (w, S1, S2) in cterm.items():
            d = f[l].float() - fc[l].float()
            coef = (2 * d * S1.view(-1, 1, 1, 1) - S2.view(-1, 1, 1, 1) * torch.sign(d)) / (S1**2).view(-1, 1, 1, 1)
            sur = sur + w * (coef.detach() * f[l].float()).sum()
        if tvw:
            # TV is local: its gradient on the core only needs one pixel of context
            sur = sur + tvw * tv_map(xt).sum() / (hw[0] * hw[1])
        (gt,) = torch.autograd.grad(sur, xt)
        (wy0, _, cy0, cy1), (wx0, _, cx0, cx1) = t
        grad[..., cy0:cy1, cx0:cx1] = gt[..., cy0 - wy0 : cy1 - wy0, cx0 - wx0 : cx1 - wx0]
    return total, style, grad
