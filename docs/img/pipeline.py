"""Draw docs/img/pipeline.png from a run of the "steps by hand" block (docs/steps.md).

    cd RUN_FOLDER && bash steps.sh            # the block of docs/steps.md, any angle step
    python docs/img/pipeline.py RUN_FOLDER -o docs/img/pipeline.png

One picture per step: a central slice of the layout, the 0-degree tilt after projection, noise and style
transfer, and a central slice of the tomogram with the class mask's outlines. Each image is stretched from the 1st
to the 99th percentile of its central 80 %.
"""

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mrcfile  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def read(path: Path) -> np.ndarray:
    with mrcfile.open(path, permissive=True) as m:
        return np.asarray(m.data, dtype=np.float32)


def stretch(a: np.ndarray) -> np.ndarray:
    """1st..99th percentile of the central 80 % (reconstruction edges carry streaks) -> 0..1."""
    h, w = a.shape
    lo, hi = np.percentile(a[h // 10 : h - h // 10, w // 10 : w - w // 10], [1, 99])
    return np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1)


def zero_tilt(ts: Path) -> np.ndarray:
    angles = np.loadtxt(ts.with_suffix(".tlt"), ndmin=1)
    return read(ts)[int(np.argmin(np.abs(angles)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="folder the steps-by-hand block ran in")
    p.add_argument("-o", "--output", type=Path, default=Path("docs/img/pipeline.png"))
    a = p.parse_args()
    r = a.run
    vol = read(r / "layout" / "volume.mrc")
    tomo = read(r / "tomo" / "tomogram_bin2.mrc")
    mask = read(r / "tomo" / "class_mask_bin2.mrc")
    panels = [
        ("faket layout", "density, central slice", vol[vol.shape[0] // 2], None),
        ("faket project", "noiseless tilt, 0°", zero_tilt(r / "ts" / "noiseless.mrc"), None),
        ("faket noise", "NOISY tilt, 0°", zero_tilt(r / "ts" / "noisy.mrc"), None),
        ("faket style", "styled tilt, 0° (random VGG)", zero_tilt(r / "ts" / "faket.mrc"), None),
        ("faket reconstruct", "tomogram, bin 2, central slice", tomo[tomo.shape[0] // 2], None),
        ("faket labels", "class mask on the tomogram", tomo[tomo.shape[0] // 2], mask[mask.shape[0] // 2]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(13.2, 2.75), dpi=100)
    for ax, (title, sub, img, labels) in zip(axes, panels):
        ax.imshow(stretch(img), cmap="gray", origin="lower", interpolation="nearest")
        if labels is not None:
            ax.imshow(
                np.ma.masked_equal(labels, 0),
                cmap="tab10",
                alpha=0.55,
                origin="lower",
                interpolation="nearest",
                vmin=1,
                vmax=10,
            )
        ax.set_title(title, fontsize=10, family="monospace")
        ax.set_xlabel(sub, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for left, right in zip(axes[:-1], axes[1:]):
        b0, b1 = left.get_position(), right.get_position()
        fig.text((b0.x1 + b1.x0) / 2, (b0.y0 + b0.y1) / 2, "→", ha="center", va="center", fontsize=16)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.05)
    Image.open(buf).convert("RGB").quantize(colors=128).save(a.output, optimize=True)
    print(f"wrote {a.output} ({a.output.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
