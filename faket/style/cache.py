"""On-disk store of style Gram targets (the I/O side of ``faket style --style-cache``).

:mod:`faket.style` computes the targets and their keys; it only asks a store for ``get(key)`` (a dict
layer -> (C, C) tensor, or None) and ``put(key, grams)``. This module keeps them as files
``DIR/gram-<sha256(key)[:32]>.pt`` (``{"key": key, "grams": {layer: tensor}}``, read with
``weights_only=True``), written atomically; a corrupt or foreign file counts as a miss and is overwritten.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from faket.errors import InputError

__all__ = ["GramCache"]


class GramCache:
    """Gram targets in the folder ``folder`` (created when missing); counts ``hits`` and ``misses``."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{folder}: cannot create the Gram cache folder ({exc.strerror})") from None

    def path(self, key: str) -> Path:
        return self.folder / f"gram-{hashlib.sha256(key.encode()).hexdigest()[:32]}.pt"

    def get(self, key: str):
        # lazy: torch
        import torch

        p = self.path(key)
        if not p.is_file():
            self.misses += 1
            return None
        try:
            d = torch.load(p, map_location="cpu", weights_only=True)
            if d.get("key") != key:
                raise ValueError("key mismatch")
            self.hits += 1
            return {int(k): v for k, v in d["grams"].items()}
        except Exception:  # a corrupt / foreign file: recompute and overwrite
            self.misses += 1
            return None

    def put(self, key: str, grams: dict) -> None:
        # lazy: torch
        import torch

        p = self.path(key)
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")
        torch.save({"key": key, "grams": {int(k): v.detach().cpu() for k, v in grams.items()}}, tmp)
        os.replace(tmp, p)

    def record(self) -> dict:
        """For the provenance sidecar."""
        return {"folder": str(self.folder), "hits": self.hits, "misses": self.misses}
