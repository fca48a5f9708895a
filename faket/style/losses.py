"""Style-transfer losses on VGG features: Gram matrices, the scaled MSE, total variation (torch)."""

from __future__ import annotations

EPS = 1e-8

#: block of :func:`per_sample_sum`; below torch's reduction grain size (32768), so each block sums on one thread
SUM_BLOCK = 4096


def per_sample_sum(t):
    """``t.flatten(1).sum(1)``, (B, ...) -> (B,), with the same bits whatever the thread count.

    torch splits a reduction to a single value over its threads (per-thread partial sums), so the loss of one
    tilt, and through its gradient the styled tilt, changed in the last bits with ``--threads`` (a SLURM job
    on 8 cores against a laptop on 2). Here each block of :data:`SUM_BLOCK` values is one output of a many-
    output reduction (summed whole by one thread) and the block sums are summed the same way.
    """
    t = t.flatten(1)
    b, n = t.shape
    if n <= SUM_BLOCK:
        return t.sum(1)
    m = n - n % SUM_BLOCK
    s = t[:, :m].reshape(b, m // SUM_BLOCK, SUM_BLOCK).sum(2)
    if m < n:
        # lazy: torch (faket's start-up imports every command module)
        import torch

        s = torch.cat([s, t[:, m:].sum(1, keepdim=True)], 1)
    return per_sample_sum(s)


def _flat_features(feat):
    """(B, C, H, W) -> (B, H W, C) fp32 (a view for channels_last fp32 input)."""
    b, c, h, w = feat.shape
    return feat.permute(0, 2, 3, 1).reshape(b, h * w, c).float()


def gram_sum(feat):
    """``F F^T`` per sample, fp32 (not normalised): (B, C, H, W) -> (B, C, C)."""
    # lazy: torch (faket's start-up imports every command module)
    import torch

    m = _flat_features(feat)
    with torch.autocast(device_type=feat.device.type, enabled=False):
        return torch.bmm(m.transpose(1, 2), m)


def gram(feat):
    """``F F^T / (H W)`` per sample, fp32: (B, C, H, W) -> (B, C, C)."""
    return gram_sum(feat) / (feat.shape[-2] * feat.shape[-1])


_GRAM_STYLE_LOSS = None


def gram_style_loss(feat, target):
    """Per-sample ``scaled_mse(gram(feat) - target)``: (B, C, H, W), (B, C, C) fp32 -> (B,) fp32.

    The same value as composing :func:`gram` and :func:`scaled_mse`, with an analytic backward: with
    ``d = G - T``, ``S1 = sum |d| + eps`` and ``S2 = sum d^2``, ``dL/dd = 2 d / S1 - S2 sign(d) / S1^2`` and
    ``dL/dF = (dL/dd + dL/dd^T) F / (H W)``: one fp32 matmul per layer instead of autograd's two, and no
    elementwise graph over the features (about half the Gram cost of a backward pass).
    """
    global _GRAM_STYLE_LOSS
    if _GRAM_STYLE_LOSS is None:
        # lazy: torch (faket's start-up imports every command module)
        import torch

        class _GramStyleLoss(torch.autograd.Function):
            @staticmethod
            def forward(ctx, f, t):
                with torch.autocast(device_type=f.device.type, enabled=False):
                    d = gram(f) - t.float()
                    s1 = per_sample_sum(d.abs()) + EPS
                    s2 = per_sample_sum(d.pow(2))
                ctx.save_for_backward(f, d, s1, s2)
                return s2 / s1

            @staticmethod
            def backward(ctx, grad_out):
                f, d, s1, s2 = ctx.saved_tensors
                b, c, h, w = f.shape
                with torch.autocast(device_type=f.device.type, enabled=False):
                    dd = 2.0 * d / s1[:, None, None] - (s2 / (s1 * s1))[:, None, None] * torch.sign(d)
                    dd = dd * grad_out.float()[:, None, None]
                    dg = (dd + dd.transpose(1, 2)) / (h * w)
                    gf = torch.bmm(_flat_features(f), dg).reshape(b, h, w, c).permute(0, 3, 1, 2).to(f.dtype)
                return gf, None

        _GRAM_STYLE_LOSS = _GramStyleLoss
    return _GRAM_STYLE_LOSS.apply(feat, target)


def scaled_mse(d):
    """Per-sample ``sum(d^2) / (sum(|d|) + 1e-8)`` of (B, ...) -> (B,)."""
    d = d.flatten(1).float()
    return per_sample_sum(d.pow(2)) / (per_sample_sum(d.abs()) + EPS)


def tv_map(x):
    """Squared forward differences (replicate edge) per pixel: (B, 1, H, W) -> (B, 1, H, W)."""
    # lazy: torch (faket's start-up imports every command module)
    import torch.nn.functional as F

    p = F.pad(x, (0, 1, 0, 1), mode="replicate")
    dx = p[..., :-1, 1:] - p[..., :-1, :-1]
    dy = p[..., 1:, :-1] - p[..., :-1, :-1]
    return dx * dx + dy * dy


def tv_loss(x):
    """Per-sample mean of squared forward differences (replicate edge): (B, 1, H, W) -> (B,)."""
    m = tv_map(x)
    return per_sample_sum(m) / m[0].numel()


def gram_scale(target):
    """Magnitude of a Gram target per sample, ``SMSE(T) = sum T^2 / (sum |T| + 1e-8)`` (floored at 1e-12):
    the per-layer normalisation of ``layer_norm`` (He, Wang & Hopcroft 2016). (B, C, C) -> (B,)."""
    t = target.flatten(1).float()
    return (per_sample_sum(t.pow(2)) / (per_sample_sum(t.abs()) + EPS)).clamp_min(1e-12)
