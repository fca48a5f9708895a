"""The baseline of bench/style.py: a plain one-tilt-at-a-time loop of FakET's style transfer (paper setting:
VGG-19 NCHW with 3 channels and ImageNet normalisation, replicate padding on the first conv, style layers
1/6/11/20/29 weighted 256/64/16/4/1, content layer 8, one Adam step of 0.15, EMA 0.99, output rescaled to the
style tilt's mean/std), plain torch without torchvision, run as a whole process like `faket style`.

    python bench/plain_style.py CONTENT.mrc NOISY.mrc STYLE.mrc WEIGHTS.pth OUT.mrc [THREADS]
"""

import sys

import mrcfile
import numpy as np
import torch
from torch import nn

torch.set_num_threads(int(sys.argv[6]) if len(sys.argv) > 6 else 2)
content, noisy, style = (mrcfile.read(p).astype(np.float32) for p in sys.argv[1:4])
unit = lambda a: torch.from_numpy((a - a.min()) / (a.max() - a.min()))  # noqa: E731
c01, x01, s01 = unit(content), unit(noisy), unit(style)
layers, cin = [], 3
for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]:
    layers += [nn.MaxPool2d(2, 2)] if v == "M" else [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
    cin = cin if v == "M" else v
net = nn.Sequential(*layers)[:30]
net.load_state_dict(torch.load(sys.argv[4]))
net[0].padding_mode = "replicate"
net.eval().requires_grad_(False)
mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
SL, SW, CL = [1, 6, 11, 20, 29], [w / 341 for w in (256, 64, 16, 4, 1)], [8]


def feats(x, want):
    y, out = (x.repeat(1, 3, 1, 1) - mean) / std, {}
    for i, m in enumerate(net[: max(want) + 1]):
        y = m(y)
        if i in want:
            out[i] = y
    return out


gram = lambda f: f.flatten(2) @ f.flatten(2).transpose(1, 2) / f[0, 0].numel()  # noqa: E731
smse = lambda d: d.pow(2).sum() / (d.abs().sum() + 1e-8)  # noqa: E731
out = np.empty_like(content)
for t in range(len(content)):
    with torch.no_grad():
        targets = {l: gram(f) for l, f in feats(s01[t][None, None], SL).items()}
        cf = feats(c01[t][None, None], CL)
    x = x01[t][None, None].clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.15)
    biased, accum = 0.01 * x.detach(), 0.99
    f = feats(x, SL + CL)
    loss = sum(w * smse(gram(f[l]) - targets[l]) for l, w in zip(SL, SW)) + sum(smse(f[l] - cf[l]) for l in CL)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        x.clamp_(0, 1)
        biased, accum = 0.99 * biased + 0.01 * x, accum * 0.99
    o = (biased / (1 - accum))[0, 0].numpy().astype(np.float64)
    out[t] = (o - o.mean()) / o.std() * style[t].std() + style[t].mean()
mrcfile.write(sys.argv[5], out, overwrite=True)
