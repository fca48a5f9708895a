"""Style transfer (faket.vgg, faket.style, faket style): small sizes, random VGG weights, CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from faket import style as st
from faket.errors import InputError, ParameterError
from faket.style.cache import GramCache
from faket.style.settings import PRESETS, StyleSettings
from faket.style.vgg import build_vgg, imagenet_cache_path, load_vgg19_state

N = 48
ANGLES = np.array([-30.0, -10.0, 10.0, 30.0])


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def model():
    return build_vgg("random", depth=29, seed=0)[0]


def blobs(T=4, n=N, seed=0):
    """Projection-like content: Gaussian blobs that move with the tilt."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    cy, cx, r = rng.uniform(8, n - 8, 12), rng.uniform(8, n - 8, 12), rng.uniform(2, 6, 12)
    out = []
    for t in range(T):
        img = np.zeros((n, n), np.float32)
        for k in range(12):
            img -= np.exp(-((yy - cy[k]) ** 2 + (xx - cx[k] - 2 * t) ** 2) / (2 * r[k] ** 2))
        out.append(img)
    return np.stack(out)


def style_ref(T=6, n=64, seed=1):
    """A 'real-looking' reference: correlated noise (smoothed gamma) with a different texture."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    a = rng.gamma(2.0, size=(T, n, n)).astype(np.float32)
    return np.stack([gaussian_filter(x, 1.2) + 0.3 * x for x in a]).astype(np.float32) * 3 + 40


def write(path, data, angles=None):
    import mrcfile

    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data, np.float32))
        m.voxel_size = 10.0
    if angles is not None:
        Path(path).with_suffix(".tlt").write_text("".join(f"{a:g}\n" for a in angles))


def read(path):
    import mrcfile

    with mrcfile.open(path) as m:
        return np.array(m.data)


@pytest.fixture
def files(tmp_path):
    c = blobs()
    rng = np.random.default_rng(3)
    noisy = c + 0.4 * rng.normal(size=c.shape).astype(np.float32)
    write(tmp_path / "content.mrc", c, ANGLES)
    write(tmp_path / "noisy.mrc", noisy, ANGLES)
    write(tmp_path / "ref.mrc", style_ref(), [-32, -28, -11, 9, 27, 33])
    return tmp_path


# ---------------------------------------------------------------------------------------------------
# model


def test_gram_normalisation():
    f = torch.randn(2, 5, 7, 3)
    g = st.gram(f.contiguous(memory_format=torch.channels_last))
    ref = np.einsum("bchw,bdhw->bcd", f.numpy().astype(np.float64), f.numpy().astype(np.float64)) / (7 * 3)
    assert g.shape == (2, 5, 5) and g.dtype == torch.float32
    np.testing.assert_allclose(g.numpy(), ref, rtol=1e-5, atol=1e-6)
    # a constant feature map of value v has G = v^2 whatever the size
    assert torch.allclose(st.gram(torch.full((1, 3, 11, 13), 2.0)), torch.full((1, 3, 3), 4.0))


def test_per_sample_sum_is_the_sum_and_ignores_the_thread_count():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 300, 301) * 5  # 270900 values: 66 blocks and a tail, over torch's grain size
    old = torch.get_num_threads()
    try:
        sums = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            sums.append(st.per_sample_sum(x))
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(sums[0], s) for s in sums[1:])
    np.testing.assert_allclose(sums[0].double().numpy(), x.double().flatten(1).sum(1).numpy(), rtol=1e-5)
    y = torch.randn(2, 5, 7)  # small: the plain sum
    assert torch.equal(st.per_sample_sum(y), y.flatten(1).sum(1))


def test_scaled_mse_per_sample():
    d = torch.tensor([[1.0, -2.0, 3.0], [0.0, 0.0, 0.5]])
    np.testing.assert_allclose(st.scaled_mse(d).numpy(), [14 / 6, 0.5], rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gram_style_loss_value_and_gradient_equal_autograd(dtype):
    """The analytic backward of gram_style_loss equals autograd through gram + scaled_mse (per sample,
    channels_last, with an upstream weight per sample); bf16 features get their gradient rounded to bf16."""
    g = torch.Generator().manual_seed(0)
    f = torch.rand(3, 16, 12, 10, generator=g).contiguous(memory_format=torch.channels_last).to(dtype)
    t = torch.rand(3, 16, 16, generator=g) * 0.3
    w = torch.tensor([1.0, 0.5, 2.0])
    a = f.clone().requires_grad_(True)
    b = f.clone().requires_grad_(True)
    la = st.scaled_mse(st.gram(a) - t)
    lb = st.gram_style_loss(b, t)
    (la * w).sum().backward()
    (lb * w).sum().backward()
    assert lb.dtype == torch.float32
    np.testing.assert_allclose(lb.detach().numpy(), la.detach().numpy(), rtol=1e-6)
    assert b.grad.dtype == dtype and b.grad.is_contiguous(memory_format=torch.channels_last)
    ga, gb = a.grad.float().numpy(), b.grad.float().numpy()
    tol = 1e-5 if dtype == torch.float32 else 2**-7  # one bf16 rounding step
    assert np.abs(ga - gb).max() <= tol * np.abs(ga).max()


def test_folded_first_conv_equals_paper_input_path(model):
    """repeat to 3 channels + ImageNet normalisation + replicate-padded conv == the folded 1-channel conv."""
    import torch.nn.functional as F
    from torchvision.models.vgg import cfgs, make_layers

    sd, _ = load_vgg19_state("random", depth=29, seed=0)
    ref = make_layers(cfgs["E"])[:30].eval()
    ref.load_state_dict({k: v for k, v in sd.items()}, strict=False)
    ref[0].padding = (0, 0)
    x = torch.rand(2, 1, 40, 48)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    y = (x.repeat(1, 3, 1, 1) - mean) / std
    y = F.pad(y, (1, 1, 1, 1), mode="replicate")
    want = {}
    with torch.no_grad():
        for i, layer in enumerate(ref):
            y = layer(y)
            want[i] = y
        got = model(x, [1, 8, 29])
    for l in (1, 8, 29):
        np.testing.assert_allclose(got[l].numpy(), want[l].numpy(), rtol=1e-4, atol=1e-4 * float(want[l].abs().max()))


def test_model_weights_are_frozen_channels_last(model):
    """Every conv weight is frozen and channels_last, including the one-input-channel first conv (whose
    NCHW strides would send it to another kernel and change fp32 results in the last bits)."""
    for conv in model.convs:
        w = conv.weight
        assert not w.requires_grad and not conv.bias.requires_grad
        assert w.is_contiguous(memory_format=torch.channels_last) and w.stride()[1] == 1


def test_state_dict_file_and_fake_imagenet_cache(tmp_path, monkeypatch, model):
    sd, _ = load_vgg19_state("random", depth=29, seed=0)
    full = {f"features.{k}": v for k, v in sd.items()}
    full["classifier.0.weight"] = torch.zeros(3, 3)  # extra keys are ignored
    p = tmp_path / "vgg.pth"
    torch.save(full, p)
    m2, info = build_vgg(str(p), depth=29)
    x = torch.rand(1, 1, 48, 48)
    with torch.no_grad():
        a, b = model(x, [29])[29], m2(x, [29])[29]
    assert torch.equal(a, b)
    from faket.formats.mrc import sha256sum

    assert info.kind == "file" and info.sha256 == sha256sum(p)
    # imagenet from a (fake) torch hub cache under TORCH_HOME
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(InputError, match="random"):
        build_vgg("imagenet", depth=29)
    cp = imagenet_cache_path()
    assert str(cp).startswith(str(tmp_path / "th"))
    cp.parent.mkdir(parents=True)
    torch.save(full, cp)
    m3, info3 = build_vgg("imagenet", depth=29)
    with torch.no_grad():
        assert torch.equal(m3(x, [29])[29], a)
    assert info3.kind == "imagenet" and info3.sha256 == sha256sum(cp)
    assert "does not match" in info3.note  # not the real file: the hash prefix in its name disagrees
    # a file that is not a state dict
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pth"):
        build_vgg(str(bad), depth=29)


# ---------------------------------------------------------------------------------------------------
# settings, defaults and errors


def test_presets_are_the_settings_defaults_except_their_stated_differences():
    """Every default is defined once, in StyleSettings: the paper preset is StyleSettings() and the offline
    preset differs from it in exactly its four stated values; the CLI and faket qc read the same values."""
    import argparse
    import dataclasses

    from faket.cli import qc as cli_qc
    from faket.cli import style as cli_style

    default = StyleSettings()
    assert PRESETS["paper"] == default
    diff = {
        f.name: getattr(PRESETS["offline"], f.name)
        for f in dataclasses.fields(StyleSettings)
        if getattr(PRESETS["offline"], f.name) != getattr(default, f.name)
    }
    assert diff == {"iterations": 3, "initial_iterations": 3, "step_size": 0.005, "content_weight": 0.0}
    # the CLI with no algorithm options gives the preset unchanged, whichever way it is chosen
    p = argparse.ArgumentParser()
    cli_style.add_arguments(p)
    base = ["c.mrc", "-o", "o.mrc", "--style", "r.mrc"]
    for argv, kind, want in (
        (["--preset", "paper"], "random", "paper"),
        ([], "imagenet", "paper"),
        ([], "random", "offline"),
        (["--preset", "offline"], "file", "offline"),
    ):
        s, name = cli_style.resolve_settings(p.parse_args(base + argv), kind)
        assert name == want and s == PRESETS[want]
    # explicit options override, and --iterations alone sets the first scale's count too
    s, _ = cli_style.resolve_settings(
        p.parse_args(base + ["--iterations", "5", "--style-layers", "1,6", "--style-layer-weights", "2,1"]), "imagenet"
    )
    assert (s.iterations, s.initial_iterations, s.style_layers, s.style_layer_weights) == (5, 5, (1, 6), (2.0, 1.0))
    assert (
        dataclasses.replace(
            s,
            iterations=1,
            initial_iterations=1,
            style_layers=default.style_layers,
            style_layer_weights=default.style_layer_weights,
        )
        == default
    )
    # the help text shows the defaults it reads
    assert f"paper: {default.step_size:g}" in p.format_help()
    assert cli_qc.STYLE_LAYERS == default.style_layers
    assert cli_qc.STYLE_LAYER_WEIGHTS == default.style_layer_weights


BAD_SETTINGS = [
    ("iterations", 0),
    ("initial_iterations", 0),
    ("min_scale", 8),
    ("end_scale", 8),
    ("step_size", 0.0),
    ("step_size", float("nan")),
    ("avg_decay", 1.0),
    ("content_weight", -1.0),
    ("tv_weight", float("inf")),
    ("pooling", "mean"),
    ("precision", "fp16"),
    ("max_tile", 32),
    ("tile_halo", -1),
    ("style_layers", (1, 99)),
    ("style_layers", (1, 1)),
    ("style_layer_weights", (1.0,)),
    ("content_layer_weights", (-1.0,)),
    ("style_layer_weights", (0.0,) * 5),
]


@pytest.mark.parametrize("name,value", BAD_SETTINGS)
def test_core_errors_name_the_parameter_not_a_cli_flag(name, value):
    s = dataclasses_replace(StyleSettings(), **{name: value})
    with pytest.raises(ParameterError) as e:
        s.validate()
    msg = str(e.value)
    assert "--" not in msg and e.value.param == name and msg.startswith(name)
    # the CLI words it for its option
    assert str(e.value.as_option()).startswith("--" + e.value.param.replace("_", "-"))


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_core_errors_outside_settings_have_no_cli_flags(tmp_path, model, monkeypatch):
    """Reference, stylize_series, StyleTransfer, configure_backends and faket.vgg raise neutral errors."""
    msgs = []

    def grab(fn):
        with pytest.raises(InputError) as e:
            fn()
        msgs.append(str(e.value))

    grab(lambda: st.Reference(style_ref(T=1), weight=0.0))
    grab(lambda: st.stylize_series(_engine(model), blobs(T=2), None, [st.Reference(style_ref(T=1))], tilt_range=(1, 5)))
    grab(lambda: st.StyleTransfer(model, StyleSettings(max_tile=128)))  # < 2 x halo 160 + 64
    grab(lambda: st.configure_backends(torch.device("cpu"), "tf32"))
    grab(lambda: st.StyleSettings(style_layers=(), content_layers=()).validate())
    grab(lambda: build_vgg(str(tmp_path / "missing.pth")))
    grab(lambda: build_vgg(str(tmp_path)))
    grab(lambda: build_vgg("random", pooling="mean"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    grab(lambda: build_vgg("imagenet"))
    assert len(msgs) == 9
    for m in msgs:
        assert "--" not in m, m


def test_cli_words_core_errors_with_its_options(files, run_cli, monkeypatch):
    d = files
    monkeypatch.setenv("TORCH_HOME", str(d / "th"))  # no ImageNet weights there
    for extra, want in (
        (["--step-size", "0"], "--step-size 0"),
        (["--max-tile", "100"], "--max-tile 100"),
        (["--weights", str(d / "missing.pth")], f"--weights {d / 'missing.pth'}"),
        (["--style-layers", "1,1", "--style-layer-weights", "1,1"], "--style-layers"),
    ):
        rc, _, err = _style(run_cli, d, d / "out.mrc", *extra)
        assert rc == 2 and want in err, err
        assert not (d / "out.mrc").exists()
    rc, _, err = _style(run_cli, d, d / "out.mrc", "--weights", "imagenet")
    assert rc == 2 and "--download-weights" in err and "--weights random" in err


# ---------------------------------------------------------------------------------------------------
# algorithm


def _engine(model, **kw):
    return st.StyleTransfer(model, st.StyleSettings(**kw))


def test_batched_equals_single(model):
    eng = _engine(model)
    c = blobs(T=3)
    rng = np.random.default_rng(0)
    init = c + 0.5 * rng.normal(size=c.shape).astype(np.float32)
    ref = st.Reference(style_ref(T=3), index=np.arange(3))
    o1, r1 = st.stylize_series(eng, c, init, [ref], tilt_batch=1, rescale=False)
    o3, r3 = st.stylize_series(eng, c, init, [ref], tilt_batch=3, rescale=False)
    # the gradient (what batching could change) agrees to float rounding
    x = eng._tensor(st.to_unit(init, *st.series_minmax(init)))
    cc = eng._tensor(st.to_unit(c, *st.series_minmax(c)))
    tg = {l: torch.stack([eng.reference_grams(ref, j, 1.0)[l] for j in range(3)]) for l in eng.style_layers}
    cf = eng.content_features(cc)
    _, _, g3 = eng.loss_and_grad(x, cc, cf, tg)
    g1 = torch.cat(
        [
            eng.loss_and_grad(
                x[i : i + 1],
                cc[i : i + 1],
                {k: v[i : i + 1] for k, v in cf.items()},
                {k: v[i : i + 1] for k, v in tg.items()},
            )[2]
            for i in range(3)
        ]
    )
    assert float((g1 - g3).abs().max()) <= 1e-4 * float(g1.abs().max())
    # outputs ([0, 1] units): equal within 1e-4 except where Adam's first step lr*g/(|g|+eps) amplifies
    # rounding on pixels whose gradient is ~eps (a handful of pixels)
    d = np.abs(o1 - o3)
    assert np.sqrt(np.mean(d**2)) < 1e-5
    assert np.mean(d > 1e-4) < 1e-3
    np.testing.assert_allclose(r1["per_tilt"]["loss_initial"], r3["per_tilt"]["loss_initial"], rtol=1e-5)


def test_style_loss_falls_and_output_follows_content(model):
    c = blobs(T=2)
    ref = st.Reference(style_ref(T=1))
    eng = _engine(model, iterations=20, initial_iterations=20, step_size=0.05)
    out, rec = st.stylize_series(eng, c[:1], None, [ref], tilt_batch=1)
    s0 = np.array(rec["per_tilt"]["style_loss_initial"])
    assert len(s0) == 1
    s1 = np.array(rec["per_tilt"]["style_loss_final"])
    assert (s1 < 0.8 * s0).all(), (s0, s1)
    # paper setting (1 step from a noisy init): the output still follows the content
    rng = np.random.default_rng(1)
    init = c + 0.3 * rng.normal(size=c.shape).astype(np.float32)
    out1, _ = st.stylize_series(_engine(model), c, init, [ref], tilt_batch=2)
    for t in range(2):
        r = np.corrcoef(out1[t].ravel(), c[t].ravel())[0, 1]
        assert r > 0.3, r
    # the output is rescaled to the reference tilt's mean and std
    assert abs(out1[0].mean() - ref.tilts[0].mean()) < 1e-3 * ref.tilts[0].std()
    assert abs(out1[0].std() - ref.tilts[0].std()) < 1e-3 * ref.tilts[0].std()


def test_multi_scale_and_weighted_references(model):
    c = blobs(T=1)
    a = st.Reference(style_ref(T=1, seed=1), weight=2.0)
    b = st.Reference(style_ref(T=1, seed=1), weight=1.0)
    eng = _engine(model, min_scale=32, iterations=2, initial_iterations=2)
    o_ab, rec = st.stylize_series(eng, c, None, [a, b])
    o_a, _ = st.stylize_series(eng, c, None, [st.Reference(style_ref(T=1, seed=1))])
    assert rec["scales"] == st.gen_scales(32, N) == [34, 48]
    # the weighted mean of two identical references' Gram targets is that reference's; (2G + G) / 3 differs
    # from G by float rounding, which Adam's normalised steps can amplify on a few pixels, so compare the RMS
    # (a wrong normalisation, e.g. a weighted sum, moves every pixel by orders of magnitude more)
    d = o_ab - o_a
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    assert rms(d) < 1e-3 * o_a.std()
    assert np.abs(d).max() < 1e-2 * o_a.std()
    # and it moves with a different reference (here by ~20 std, four orders of magnitude more)
    o_c, _ = st.stylize_series(eng, c, None, [a, st.Reference(blobs(T=1, seed=9)[0] * 5, weight=3.0)])
    assert rms(o_c / o_c.std() - o_a / o_a.std()) > 1.0


def test_tiled_gradient_matches_untiled(model):
    """Tiled loss/gradient (cores + halo) equals the whole tilt's when the halo covers twice the receptive
    field radius: layers up to relu3_1 (receptive field 24 px), halo 32, 128^2 in 96-pixel tiles."""
    c = blobs(T=1, n=128)
    rng = np.random.default_rng(2)
    init = c + 0.5 * rng.normal(size=c.shape).astype(np.float32)
    ref = st.Reference(style_ref(T=1, n=64))
    kw = dict(style_layers=(1, 6, 11), style_layer_weights=(4, 2, 1), content_layers=(8,), tv_weight=0.5)
    whole = _engine(model, **kw)
    tiled = _engine(model, max_tile=96, tile_halo=32, **kw)
    assert len(tiled._tiles((128, 128))) == 16
    x = whole._tensor(st.to_unit(init, *st.series_minmax(init)))
    cc = whole._tensor(st.to_unit(c, *st.series_minmax(c)))
    tg = {l: g[None] for l, g in whole.reference_grams(ref, 0, 1.0).items()}
    l0, s0, g0 = whole.loss_and_grad(x, cc, whole.content_features(cc), tg)
    l1, s1, g1 = tiled.loss_and_grad(x, cc, None, tg)
    assert abs(float(l1 - l0)) < 1e-5 * float(l0)
    assert float((g1 - g0).abs().max()) < 1e-4 * float(g0.abs().max())
    # Gram targets of a tiled reference (pass 1 over cores) equal the whole tilt's
    big = st.Reference(style_ref(T=1, n=128))
    gw, gt = whole.reference_grams(big, 0, 1.0), tiled.reference_grams(big, 0, 1.0)
    for l in gw:
        assert float((gw[l] - gt[l]).norm() / gw[l].norm()) < 1e-5


def test_gram_cache(tmp_path, model):
    c = blobs(T=2)
    ref = st.Reference(style_ref(T=2), index=np.arange(2))
    eng = _engine(model)
    cache = GramCache(tmp_path / "cache")
    o1, r1 = st.stylize_series(eng, c, None, [ref], cache=cache, weights_key="random:x")
    assert cache.misses == 2 and cache.hits == 0 and len(list((tmp_path / "cache").glob("*.pt"))) == 2
    cache2 = GramCache(tmp_path / "cache")
    o2, _ = st.stylize_series(eng, c, None, [ref], cache=cache2, weights_key="random:x")
    assert cache2.hits == 2 and cache2.misses == 0
    np.testing.assert_array_equal(o1, o2)
    cache3 = GramCache(tmp_path / "cache")  # other weights: other key
    st.stylize_series(eng, c, None, [ref], cache=cache3, weights_key="random:y")
    assert cache3.hits == 0


class CountingModel(torch.nn.Module):
    """The VGG module, counting its forward calls."""

    def __init__(self, m):
        super().__init__()
        self.m, self.calls = m, 0

    def forward(self, x, layers):
        self.calls += 1
        return self.m(x, layers)


@pytest.mark.parametrize("final_loss", [False, True])
def test_default_run_does_no_extra_forward_for_the_final_loss(model, final_loss):
    """Paper setting, one tilt per batch: a style-target, a content and an image forward per tilt and
    nothing else by default; the opt-in final loss adds exactly one forward per tilt (the output's)."""
    T = 3
    cm = CountingModel(model)
    eng = st.StyleTransfer(cm, StyleSettings(final_loss=final_loss), device=torch.device("cpu"))
    c = blobs(T=T)
    rng = np.random.default_rng(0)
    init = c + 0.5 * rng.normal(size=c.shape).astype(np.float32)
    out, rec = st.stylize_series(eng, c, init, [st.Reference(style_ref(T=T), index=np.arange(T))], tilt_batch=1)
    assert cm.calls == (4 if final_loss else 3) * T
    pt = rec["per_tilt"]
    if final_loss:
        assert rec["final_loss_of"] == "output"
        assert pt["loss_final"] != pt["loss_initial"]
    else:
        # one iteration: the last iterate is the first, whose loss was computed for its gradient
        assert rec["final_loss_of"] == "last_iterate"
        assert pt["loss_final"] == pt["loss_initial"] and pt["style_loss_final"] == pt["style_loss_initial"]
    # the same output either way
    eng2 = st.StyleTransfer(model, StyleSettings(final_loss=not final_loss))
    out2, _ = st.stylize_series(eng2, c, init, [st.Reference(style_ref(T=T), index=np.arange(T))], tilt_batch=1)
    np.testing.assert_array_equal(out, out2)


def test_gram_store_is_any_get_put_object(model):
    """The core asks a store for get/put only (no paths): a dict-backed store gets the same targets, and a
    second run reads them instead of running the style forward."""

    class DictStore(dict):
        def get(self, key):
            return super().get(key)

        def put(self, key, grams):
            self[key] = grams

    store = DictStore()
    c = blobs(T=2)
    ref = st.Reference(style_ref(T=2), index=np.arange(2))
    o1, _ = st.stylize_series(_engine(model), c, None, [ref], cache=store, weights_key="k")
    assert len(store) == 2 and all(set(g) == set(StyleSettings().style_layers) for g in store.values())
    cm = CountingModel(model)
    eng = st.StyleTransfer(cm, StyleSettings(), device=torch.device("cpu"))
    o2, _ = st.stylize_series(eng, c, None, [ref], cache=store, weights_key="k")
    assert cm.calls == 2 * 2  # content + image forward per tilt: no style forward
    np.testing.assert_array_equal(o1, o2)


def test_gram_cache_files_round_trip_and_recover_from_corrupt_files(tmp_path, model):
    cache = GramCache(tmp_path / "c")
    eng = _engine(model)
    ref = st.Reference(style_ref(T=1))
    g = eng.reference_grams(ref, 0, 1.0, cache=cache, weights_key="w")
    key = eng.target_key(ref, 0, ref.tilts.shape[1:], "w")
    assert cache.path(key).is_file() and cache.misses == 1
    again = GramCache(tmp_path / "c").get(key)
    assert set(again) == set(g) and all(torch.equal(again[l], g[l]) for l in g)
    assert GramCache(tmp_path / "c").get("another key") is None
    cache.path(key).write_bytes(b"garbage")
    c2 = GramCache(tmp_path / "c")
    g2 = eng.reference_grams(ref, 0, 1.0, cache=c2, weights_key="w")  # recomputed and rewritten
    assert c2.misses == 1 and c2.hits == 0 and all(torch.equal(g2[l], g[l]) for l in g)
    assert GramCache(tmp_path / "c").get(key) is not None
    assert c2.record() == {"folder": str(tmp_path / "c"), "hits": 0, "misses": 1}
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="file"):
        GramCache(tmp_path / "file" / "sub")


# ---------------------------------------------------------------------------------------------------
# command line


def _style(run_cli, d, out, *extra):
    return run_cli(
        "style",
        d / "content.mrc",
        "--style",
        d / "ref.mrc",
        "--init",
        d / "noisy.mrc",
        "-o",
        out,
        "--weights",
        "random",
        "--threads",
        "2",
        "-q",
        *extra,
    )


def test_cli_runs_deterministic_and_records_losses(files, run_cli):
    d = files
    rc, _, err = _style(run_cli, d, d / "a.mrc", "--tilt-batch", "2")
    assert rc == 0, err
    assert "RANDOM" in err  # loud about the weights
    rc, _, err = _style(run_cli, d, d / "b.mrc", "--tilt-batch", "2")
    assert rc == 0, err
    a, b = read(d / "a.mrc"), read(d / "b.mrc")
    assert a.shape == (4, N, N)
    np.testing.assert_array_equal(a, b)
    rec = json.loads((d / "a.json").read_text())
    s = rec["style"]
    assert s["weights"]["kind"] == "random" and len(s["weights"]["sha256"]) == 64
    pt = s["per_tilt"]
    assert pt["index"] == [0, 1, 2, 3]
    for k in ("loss_initial", "loss_final", "style_loss_initial", "style_loss_final"):
        assert len(pt[k]) == 4 and all(np.isfinite(pt[k]))
    assert s["final_loss_of"] == "last_iterate"  # the default runs no extra forward for the sidecar
    assert s["preset"] == "offline" and s["settings"]["initial_iterations"] == 3
    # angle matching: -30 -> -32 (index 0), -10 -> -11 (2), 10 -> 9 (3), 30 -> 27 (4)
    assert s["references"][0]["matched_index"] == [0, 2, 3, 4]
    ref = read(d / "ref.mrc")
    assert abs(a[1].mean() - ref[2].mean()) < 1e-3 * ref[2].std()
    np.testing.assert_allclose(np.loadtxt(d / "a.tlt"), ANGLES)


def _style_process(d, out, threads, *extra):
    """``faket style`` as its own process (a Snakemake job): what a thread count may change is the whole run."""
    import os
    import subprocess
    import sys

    argv = [sys.executable, "-m", "faket", "style", d / "content.mrc", "--style", d / "ref.mrc"]
    argv += ["--init", d / "noisy.mrc", "-o", out, "--weights", "random", "--threads", str(threads), "-q", *extra]
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=os.environ)
    assert p.returncode == 0, p.stderr
    return read(out)


def test_cli_same_arrays_with_one_and_two_threads(tmp_path):
    """A SLURM job and a local run may get different thread counts; the arrays must not depend on it.

    Two causes, each seen to change the output's last bits at 1 and 2 threads: MKL splits the Gram GEMM's
    long reduction (H W) over threads unless its strict reproducibility mode is on (faket sets ``MKL_CBWR``),
    and torch sums a tilt's loss (one output) in per-thread parts (the losses use ``per_sample_sum``). One
    tilt per batch (a batch of several is a many-output reduction); whole processes, as the workflow runs.
    """
    c = blobs(n=64)
    noisy = c + 0.4 * np.random.default_rng(3).normal(size=c.shape).astype(np.float32)
    write(tmp_path / "content.mrc", c, ANGLES)
    write(tmp_path / "noisy.mrc", noisy, ANGLES)
    write(tmp_path / "ref.mrc", style_ref(), [-32, -28, -11, 9, 27, 33])
    for extra in ((), ("--preset", "paper")):
        one = _style_process(tmp_path, tmp_path / "t1.mrc", 1, "--tilt-batch", "1", *extra)
        two = _style_process(tmp_path, tmp_path / "t2.mrc", 2, "--tilt-batch", "1", *extra)
        np.testing.assert_array_equal(one, two)
    env = json.loads((tmp_path / "t2.json").read_text())["environment"]
    assert env["MKL_CBWR"] == "AUTO,STRICT"


def test_cli_final_loss_option_and_cache_record(files, run_cli):
    d = files
    rc, _, err = _style(run_cli, d, d / "f.mrc", "--tilts", "0:1", "--final-loss", "--style-cache", d / "cache")
    assert rc == 0, err
    s = json.loads((d / "f.json").read_text())["style"]
    assert s["final_loss_of"] == "output" and s["settings"]["final_loss"] is True
    assert s["per_tilt"]["loss_final"] != s["per_tilt"]["loss_initial"]
    assert s["gram_cache"] == {"folder": str(d / "cache"), "hits": 0, "misses": 1}
    rc, _, err = _style(run_cli, d, d / "g.mrc", "--tilts", "0:1", "--style-cache", d / "cache")
    assert rc == 0, err
    s = json.loads((d / "g.json").read_text())["style"]
    assert s["gram_cache"]["hits"] == 1 and s["final_loss_of"] == "last_iterate"
    np.testing.assert_array_equal(read(d / "f.mrc"), read(d / "g.mrc"))


def test_cli_iterations_option_lowers_style_loss(files, run_cli):
    d = files
    rc, _, err = _style(run_cli, d, d / "it.mrc", "--iterations", "20", "--step-size", "0.05", "--tilts", "0:1")
    assert rc == 0, err
    s = json.loads((d / "it.json").read_text())["style"]
    assert s["settings"]["iterations"] == s["settings"]["initial_iterations"] == 20
    assert s["per_tilt"]["style_loss_final"][0] < 0.8 * s["per_tilt"]["style_loss_initial"][0]


def test_cli_chunks_equal_full(files, run_cli):
    d = files
    assert _style(run_cli, d, d / "full.mrc", "--tilt-batch", "2")[0] == 0
    assert _style(run_cli, d, d / "c0.mrc", "--tilt-batch", "2", "--tilts", "0:2")[0] == 0
    assert _style(run_cli, d, d / "c1.mrc", "--tilt-batch", "2", "--tilts", "2:4")[0] == 0
    full, c0, c1 = read(d / "full.mrc"), read(d / "c0.mrc"), read(d / "c1.mrc")
    assert c0.shape == (2, N, N)
    np.testing.assert_array_equal(np.concatenate([c0, c1]), full)
    np.testing.assert_allclose(np.loadtxt(d / "c1.tlt"), ANGLES[2:])
    assert json.loads((d / "c1.json").read_text())["style"]["tilt_range"] == [2, 4]


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
@pytest.mark.parametrize("case", ["shape", "layer", "nan", "no_tlt", "weights", "tilts", "tf32"])
def test_cli_bad_input(files, run_cli, case):
    d = files
    extra = []
    if case == "shape":
        write(d / "noisy.mrc", np.zeros((4, N, N + 2), np.float32), ANGLES)
    elif case == "layer":
        extra = ["--style-layers", "1,6,99", "--style-layer-weights", "1,1,1"]
    elif case == "nan":
        c = read(d / "content.mrc")
        c[0, 3, 3] = np.nan
        write(d / "content.mrc", c, ANGLES)
    elif case == "no_tlt":
        (d / "ref.tlt").unlink()
    elif case == "weights":
        extra = ["--weights", str(d / "missing.pth")]
    elif case == "tilts":
        extra = ["--tilts", "2:9"]
    elif case == "tf32":
        extra = ["--precision", "tf32", "--device", "cpu"]
    rc, out, err = _style(run_cli, d, d / "out.mrc", *extra)
    assert rc == 2
    lines = [ln for ln in err.strip().splitlines() if "error" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert not (d / "out.mrc").exists() and not (d / "out.json").exists() and not (d / "out.tlt").exists()
