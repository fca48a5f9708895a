"""Label binning in Z chunks (bounded memory at 1024^3) gives the same masks as binning the volume at once."""

from __future__ import annotations

import numpy as np
import pytest

from faket import labels as M


def _layout(rng, shape, n):
    occ = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        c = rng.integers(0, shape)
        r = rng.integers(0, 3, 3)
        occ[tuple(slice(max(0, ci - ri), ci + ri + 1) for ci, ri in zip(c, r))] = k
    cls = np.where(occ > 0, occ % 3 + 1, 0) + (rng.random(shape) < 0.05) * 5 * (occ == 0)
    return cls.astype(np.int32), occ


@pytest.mark.parametrize("seed", range(6))
def test_chunked_binning_equals_whole_volume(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(9, 27, 3))
    cls, occ = _layout(rng, shape, int(rng.integers(3, 40)))
    results = {}
    for name, chunk in (("whole", 1 << 40), ("chunked", 300)):  # 300 voxels: a chunk per binned plane or so
        monkeypatch.setattr(M, "CHUNK_VOXELS", chunk)
        out = {}
        for b in (2, 3):
            info = M.BinInfo()
            out[b, "occ"] = M.bin_label_mask(occ, b, info=info)
            out[b, "info"] = info
            out[b, "cls"] = M.bin_label_mask(cls, b, keep_all=False)
            centres = {int(p): (0, 0, 0) for p in np.unique(occ)[1:3]}
            out[b, "masks"] = M.bin_masks(cls, occ, b, centres_zyx=centres)
        out["classes"] = M.particle_classes(cls, occ)
        results[name] = out
    w, c = results["whole"], results["chunked"]
    assert w["classes"] == c["classes"] and w["classes"]
    for b in (2, 3):
        np.testing.assert_array_equal(w[b, "occ"], c[b, "occ"])
        assert w[b, "info"] == c[b, "info"]
        np.testing.assert_array_equal(w[b, "cls"], c[b, "cls"])
        for x, y in zip(w[b, "masks"][:2], c[b, "masks"][:2]):
            np.testing.assert_array_equal(x, y)
        assert w[b, "masks"][2] == c[b, "masks"][2]


def test_rescue_across_chunks(monkeypatch):
    """A particle that wins no block is rescued into its best block also when that block is in another chunk
    than the blocks it lost."""
    occ = np.zeros((8, 4, 4), np.int32)
    occ[0:8, 0:2, 0:2] = 1  # a big particle: 4 blocks
    occ[1, 0, 0] = 2  # a one-voxel particle inside block (0, 0, 0): loses the vote
    occ[2, 0, 0] = 2  # and one voxel in block (1, 0, 0): two candidate blocks, 1 voxel each
    monkeypatch.setattr(M, "CHUNK_VOXELS", 16)  # one binned plane per chunk
    info = M.BinInfo()
    got = M.bin_label_mask(occ, 2, info=info)
    monkeypatch.setattr(M, "CHUNK_VOXELS", 1 << 40)
    info_w = M.BinInfo()
    want = M.bin_label_mask(occ, 2, info=info_w)
    np.testing.assert_array_equal(got, want)
    assert info == info_w and 2 in info.rescued and (got == 2).sum() == 1
