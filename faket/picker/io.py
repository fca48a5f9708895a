"""Reading and writing picker models (a small torch checkpoint of plain types: loads with weights_only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from faket.errors import InputError
from faket.picker.net import DeepFinderUNet

FORMAT = "faket-picker/1"


def save_model(
    path,
    model: DeepFinderUNet,
    *,
    class_names: dict[int, str],
    class_sizes: dict[int, float],
    patch: int,
    params: dict[str, Any],
    losses: list[float],
    voxel_size_a: float | None = None,
) -> None:
    torch.save(
        {
            "format": FORMAT,
            "n_out": model.n_out,
            "state_dict": model.state_dict(),
            "voxel_size_a": None if voxel_size_a is None else float(voxel_size_a),
            "class_names": {int(k): str(v) for k, v in class_names.items()},
            "class_sizes": {int(k): float(v) for k, v in class_sizes.items()},
            "patch": int(patch),
            "params": params,
            "losses": [float(v) for v in losses],
        },
        path,
    )


def load_model(path, device="cpu") -> tuple[DeepFinderUNet, dict[str, Any]]:
    """``(model in eval mode, checkpoint dict without the weights)``; InputError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: picker model not found")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a bad input
        raise InputError(f"{p}: not a faket picker model ({type(exc).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise InputError(f"{p}: not a faket picker model (written by `faket picker train`)")
    model = DeepFinderUNet(int(ck["n_out"]))
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError:
        raise InputError(f"{p}: picker model weights do not fit the network") from None
    meta = {k: v for k, v in ck.items() if k != "state_dict"}
    return model.to(device).eval(), meta
