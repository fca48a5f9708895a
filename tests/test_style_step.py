"""The paper's single Adam step in closed form: lr * g / (|g| + eps), the same as the general Adam path."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from faket import style as st
from faket.style import engine as E
from faket.style.vgg import build_vgg


def test_single_step_is_adams_first_step():
    g = torch.tensor([[[[3.0, -2.0, 0.0, 1e-9, -1e-12, 5e-21, -7.5e-3]]]])
    x0 = torch.full_like(g, 0.5)
    a = x0.clone()
    E._Adam(a, 0.15, single=True).step(a, g)
    b = x0.clone()
    E._Adam(b, 0.15).step(b, g)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    # lr * sign(g) where |g| >> eps; less where |g| ~ eps; no step where g == 0
    np.testing.assert_allclose((x0 - a)[0, 0, 0, [0, 1, 6]].numpy(), [0.15, -0.15, -0.15], atol=1e-6)
    assert a[0, 0, 0, 2] == 0.5 and 0 < float(x0[0, 0, 0, 3] - a[0, 0, 0, 3]) < 0.15


def test_paper_setting_output_unchanged_by_the_closed_form(monkeypatch):
    """stylize_series in the paper's setting (one scale, one step) with the closed-form step vs the general
    Adam step: the same outputs to float rounding."""
    rng = np.random.default_rng(0)
    content = rng.random((2, 64, 64), dtype=np.float32)
    init = content + rng.standard_normal(content.shape).astype(np.float32)
    style = rng.gamma(2.0, size=(2, 64, 64)).astype(np.float32)
    model, _ = build_vgg("random", depth=29, seed=0)
    eng = st.StyleTransfer(model, dataclasses.replace(st.PRESETS["paper"]))
    fast, rec = st.stylize_series(eng, content, init, [st.Reference(style)])
    general = E._Adam.__init__

    def no_single(self, x, lr, betas=(0.9, 0.999), eps=1e-8, *, single=False):
        general(self, x, lr, betas, eps, single=False)

    monkeypatch.setattr(E._Adam, "__init__", no_single)
    slow, rec2 = st.stylize_series(eng, content, init, [st.Reference(style)])
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-5 * float(np.abs(slow).max()))
    assert rec["per_tilt"] == rec2["per_tilt"]
    # the step is really taken: each pixel of the [0, 1] output is the EMA of the init and the init moved by
    # ~0.15 * sign(g): (0.99 x0 + x1) / 1.99, i.e. ~0.075 away from the init where the clamp allows
    out01, _ = st.stylize_series(eng, content, init, [st.Reference(style)], rescale=False)
    x0 = st.to_unit(init, *st.series_minmax(init))
    moved = np.abs(out01 - x0)
    assert np.median(moved) > 0.07 and moved.max() < 0.0754
