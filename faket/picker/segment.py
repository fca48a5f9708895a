"""Segmentation of a whole tomogram by overlapping patches (MONAI sliding-window inference)."""

from __future__ import annotations

import numpy as np
import torch

from faket.picker import DEFAULTS


def _zscore_t(x: torch.Tensor) -> torch.Tensor:
    """Per-patch z-score of a batch (N, 1, Z, Y, X), as in training."""
    dims = tuple(range(1, x.ndim))
    m = x.mean(dim=dims, keepdim=True)
    s = x.std(dim=dims, keepdim=True, unbiased=False)
    return (x - m) / torch.where(s > 0, s, torch.ones_like(s))


def patch_scores(model: torch.nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, C, ...) of a batch of raw patches (N, 1, ...): z-score, network, softmax."""
    return torch.softmax(model(_zscore_t(patches)), dim=1)


def segment(
    model: torch.nn.Module,
    volume: np.ndarray,
    *,
    patch: int = DEFAULTS["patch"],
    overlap: float = DEFAULTS["overlap"],
    batch: int = DEFAULTS["batch"],
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (Z, Y, X) uint8/int, scores (C, Z, Y, X) float32)`` of a volume.

    Windows of ``patch``^3 with ``overlap`` (fraction) tile the volume (MONAI ``sliding_window_inference``,
    constant blending = the mean over the windows covering a voxel); each window is z-scored like the
    training patches. A volume thinner than the patch is padded (zeros after its own z-score).
    """
    # lazy: monai
    from monai.inferers import sliding_window_inference

    device = torch.device(device)
    vol = np.asarray(volume, dtype=np.float32)
    # normalise the whole volume first so zero padding of a thin volume is neutral; windows are z-scored again
    s = float(vol.std())
    vol = (vol - float(vol.mean())) / (s if s > 0 else 1.0)
    x = torch.from_numpy(np.ascontiguousarray(vol))[None, None]
    model = model.to(device).eval()
    with torch.no_grad():
        out = sliding_window_inference(
            x,
            roi_size=(patch,) * 3,
            sw_batch_size=batch,
            predictor=lambda p: patch_scores(model, p),
            overlap=overlap,
            mode="constant",
            sw_device=device,
            device=torch.device("cpu"),
            progress=progress,
        )
    scores = out[0].float().numpy()
    labels = np.argmax(scores, axis=0)
    labels = labels.astype(np.uint8 if scores.shape[0] <= 256 else np.int32)
    return labels, scores.astype(np.float32)
