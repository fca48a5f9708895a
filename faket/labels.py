"""Labels for a reconstructed tomogram: masks cropped and binned exactly like the tomogram, particle
coordinates moved into the tomogram's voxel grid.

Geometry (see CONTRIBUTING.md)
------------------------------
- The tomogram holds the slab of original (unbinned) volume indices ``[a, b)`` in Z, binned by ``B``
  in Z, Y and X with blocks that start at index 0; trailing samples that do not fill a block are
  dropped. Binned index ``i_b`` covers original indices ``[i_b*B, i_b*B + B)`` (after the Z crop).
- A point maps as ``x_b = (x - (B - 1)/2) / B``, ``y_b = (y - (B - 1)/2) / B`` and
  ``z_b = (z - a - (B - 1)/2) / B``.
- A point is *inside* the tomogram when every binned coordinate lies in ``[-0.5, n_b - 0.5)``, i.e. its
  original voxel falls in a block that the tomogram keeps.

Binning rule for label masks ("vote, then keep every particle")
---------------------------------------------------------------
1. Each block takes the label that most of its ``B**3`` voxels carry, background (0) included.
   Ties go to a non-zero label over background, then to the smallest label.
2. A label present in the cropped mask that won no block (a particle smaller than a block, or one that
   straddles block borders so that it is a minority everywhere) takes the block where it has the most
   voxels (ties: lowest flat block index), preferring a block whose current label is background or
   still holds another block; so every particle with at least one voxel inside the kept region stays
   present with at least one voxel. The rescued blocks are reported.
3. For a class mask paired with an occupancy (instance) mask, the occupancy mask is binned by 1-2 and
   the class of each binned particle voxel is that particle's class (its most frequent class value in
   the original mask), so both binned masks agree voxel by voxel. Blocks with no particle take the
   vote of the class mask over voxels that belong to no particle (e.g. vesicles or membranes labelled
   in the class mask only).
4. Centres (when the particle centres are given, as ``faket labels`` does): each particle owns the block that
   holds its binned centre (``numpy.rint`` of the binned coordinate, as ``faket evaluate`` rounds picks), as
   every particle owns its centre voxel in a ``faket layout`` mask; so a pick at a listed centre hits its
   particle in the binned mask too. A centre block is not taken from a particle for which it is the only
   block, nor from another particle's centre; such particles are reported (``centre_conflicts``).

Cellular layouts (membranes, filaments; docs/cellular-layouts.md)
-----------------------------------------------------------------
- Membranes and filaments are instances of the occupancy mask after the particles; rules 1-3 keep them
  like particles (renumbered after the listed particles, :func:`renumber`). ``instances.csv`` is
  remapped through the same id map (:func:`bin_instances`).
- The membrane mask (0/1 on bilayer voxels) is binned by *any voxel of the block* (max-pooling,
  :func:`bin_binary_mask`): a 4-5 nm bilayer is thinner than a block at bin 4-8, so a vote would break it
  into pieces, while max-pooling maps voxels that touch to blocks that touch (or are the same), so a
  connected membrane stays connected and a closed one stays closed wherever its lumen is wider than a
  few blocks. Every block that the binned occupancy mask gives to a membrane is in it.
- Points (filament polylines and subunits, membrane centres) move with the formula above, like particle
  centres; polyline and subunit points outside the tomogram are dropped (each point keeps its
  ``filament_id`` and index), membranes are kept when they have a voxel in the binned occupancy mask
  (their centre may then lie outside). Angles and sizes in nm do not change.

Functions take and return numpy arrays; they never touch paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from faket.errors import InputError
from faket.formats.names import (  # the file names live with every other output name
    CELLULAR_LABEL_FILES,
    CELLULAR_LAYOUT_FILES,
    FULL_LIST_FILES,
    LAYOUT_FILES,
    cellular_label_files,
    label_files,
)

#: bin-independent files faket labels writes from a cellular layout (old name of CELLULAR_LABEL_FILES)
CELLULAR_FILES = CELLULAR_LABEL_FILES

__all__ = [
    "label_files",
    "cellular_label_files",
    "FULL_LIST_FILES",
    "LAYOUT_FILES",
    "CELLULAR_LAYOUT_FILES",
    "CELLULAR_FILES",
    "bin_binary_mask",
    "bin_instances",
    "bin_points",
    "bin_membranes",
    "bin_labels",
    "BinnedLabels",
    "renumber",
    "class_ids_from_mask",
    "one_to_one",
    "crop_z",
    "block_view",
    "bin_label_mask",
    "bin_masks",
    "claim_centres",
    "binned_shape",
    "to_binned_coordinates",
    "binned_origin",
    "inside_binned",
    "BinInfo",
]


def crop_z(volume: np.ndarray, z_range: tuple[int, int] | None) -> np.ndarray:
    """Original Z indices ``[a, b)`` of a ``(Z, Y, X)`` volume (``None``: all)."""
    if z_range is None:
        return volume
    a, b = int(z_range[0]), int(z_range[1])
    nz = volume.shape[0]
    if a < 0 or b > nz or b <= a:
        raise InputError(f"--z-range {a}:{b}: outside the volume's Z range 0:{nz}")
    return volume[a:b]


def binned_shape(shape_zyx, bin_factor: int) -> tuple[int, ...]:
    """Shape after block binning by ``bin_factor`` (trailing samples dropped)."""
    b = int(bin_factor)
    if b < 1:
        raise InputError(f"--bin {bin_factor}: must be at least 1")
    out = tuple(int(n) // b for n in shape_zyx)
    if min(out) < 1:
        raise InputError(f"--bin {bin_factor}: larger than the (cropped) volume of shape {tuple(shape_zyx)}")
    return out


def block_view(volume: np.ndarray, bin_factor: int) -> np.ndarray:
    """``(nz_b * ny_b * nx_b, B**3)`` array of the voxels of each block (C order of blocks)."""
    b = int(bin_factor)
    nz, ny, nx = binned_shape(volume.shape, b)
    v = volume[: nz * b, : ny * b, : nx * b]
    v = v.reshape(nz, b, ny, b, nx, b).transpose(0, 2, 4, 1, 3, 5)
    return v.reshape(nz * ny * nx, b**3)


@dataclass
class BinInfo:
    """What the label binning did: labels rescued (label -> flat block index) and labels lost."""

    rescued: dict[int, int] = field(default_factory=dict)
    lost: list[int] = field(default_factory=list)
    centres_claimed: list[int] = field(default_factory=list)
    centre_conflicts: list[int] = field(default_factory=list)


def _runs(blocks: np.ndarray):
    """Per block, the distinct labels and their voxel counts: arrays (block, label, count)."""
    n, k = blocks.shape
    s = np.sort(blocks, axis=1)
    start = np.ones_like(s, dtype=bool)
    start[:, 1:] = s[:, 1:] != s[:, :-1]
    flat_start = np.flatnonzero(start.ravel())
    counts = np.diff(np.append(flat_start, n * k))
    rows = flat_start // k
    labels = s.ravel()[flat_start]
    return rows, labels, counts


def _vote(rows, labels, counts, n_blocks: int) -> np.ndarray:
    """Most frequent label per block; ties: non-zero over zero, then the smallest label."""
    order = np.lexsort((labels, labels == 0, -counts, rows))
    r = rows[order]
    first = np.ones(r.size, dtype=bool)
    first[1:] = r[1:] != r[:-1]
    out = np.zeros(n_blocks, dtype=labels.dtype)
    out[r[first]] = labels[order][first]
    return out


def _rescue(winner: np.ndarray, rows, labels, counts, info: BinInfo) -> np.ndarray:
    present = np.unique(labels[labels != 0])
    won = np.unique(winner[winner != 0])
    missing = np.setdiff1d(present, won, assume_unique=True)
    if missing.size == 0:
        return winner
    winner = winner.copy()
    n_blocks_of = dict(zip(*np.unique(winner, return_counts=True)))
    # rescue the largest particles first (their best block is most clearly theirs)
    totals = {int(m): int(counts[labels == m].sum()) for m in missing}
    for m in sorted(totals, key=lambda x: (-totals[x], x)):
        sel = labels == m
        cand_rows, cand_counts = rows[sel], counts[sel]
        order = np.lexsort((cand_rows, -cand_counts))
        chosen = None
        for r in cand_rows[order]:
            cur = int(winner[r])
            if cur == 0 or n_blocks_of.get(cur, 0) > 1:
                chosen = int(r)
                break
        if chosen is None:
            info.lost.append(int(m))
            continue
        cur = int(winner[chosen])
        n_blocks_of[cur] = n_blocks_of.get(cur, 0) - 1
        winner[chosen] = m
        n_blocks_of[m] = n_blocks_of.get(m, 0) + 1
        info.rescued[int(m)] = chosen
    return winner


# Input voxels per chunk of binned Z planes: the vote runs chunk by chunk, so its working memory is a few
# times this (not a few times the volume: 1024^3 int32 masks are 4 GB each), and the chunks' results are
# identical to a vote over the whole volume (a block's vote depends on its own voxels; the rescue of rule 2
# sees the non-background (block, label, count) runs of every chunk).
CHUNK_VOXELS = 1 << 24


def _vote_chunks(
    slab: Callable[[int, int], np.ndarray], shape, b: int, keep_all: bool, info: BinInfo | None
) -> np.ndarray:
    """Majority vote per block over ``slab(z0, z1)`` (the integer labels of original Z planes ``[z0, z1)``),
    in chunks of binned Z planes; with ``keep_all`` the rescue of labels that win no block."""
    out_shape = binned_shape(shape, b)
    n_zb, n_yb, n_xb = out_shape
    per_plane = n_yb * n_xb
    step = max(1, CHUNK_VOXELS // max(1, b * shape[1] * shape[2]))
    winner = None
    runs = []
    for z0 in range(0, n_zb, step):
        z1 = min(n_zb, z0 + step)
        blocks = block_view(slab(z0 * b, z1 * b), b)
        rows, labels, counts = _runs(blocks)
        w = _vote(rows, labels, counts, blocks.shape[0])
        if winner is None:
            winner = np.empty(n_zb * per_plane, dtype=w.dtype)
        winner[z0 * per_plane : z1 * per_plane] = w
        if keep_all:
            fg = labels != 0
            runs.append((rows[fg] + z0 * per_plane, labels[fg], counts[fg]))
    if keep_all:
        rows, labels, counts = (np.concatenate(v) for v in zip(*runs))
        winner = _rescue(winner, rows, labels, counts, info if info is not None else BinInfo())
    return winner.reshape(out_shape)


def bin_label_mask(
    mask: np.ndarray, bin_factor: int, *, keep_all: bool = True, info: BinInfo | None = None
) -> np.ndarray:
    """Bin an integer label mask ``(Z, Y, X)`` by majority vote per block (rule in the module doc).

    Parameters
    ----------
    mask : (Z, Y, X) integer labels, 0 = background.
    bin_factor : block edge B (1 returns a copy).
    keep_all : rescue labels that win no block (step 2 of the rule).
    info : filled with the rescued / lost labels when given.

    Returns
    -------
    (Z//B, Y//B, X//B) array of the same dtype.
    """
    m = np.asarray(mask)
    if m.ndim != 3:
        raise InputError(f"label mask must be 3-D (Z, Y, X), got shape {m.shape}")
    if not np.issubdtype(m.dtype, np.integer):
        if not np.all(np.isfinite(m)) or np.any(m != np.round(m)):
            raise InputError("label mask holds non-integer values")
        m = m.astype(np.int64)
    b = int(bin_factor)
    binned_shape(m.shape, b)
    if b == 1:
        return m.copy()
    return _vote_chunks(lambda z0, z1: m[z0:z1], m.shape, b, keep_all, info)


def particle_classes(class_mask: np.ndarray, occupancy_mask: np.ndarray) -> dict[int, int]:
    """particle_id -> its most frequent non-zero class in ``class_mask`` (0 when it has none)."""
    occ_v, cls_v = np.asarray(occupancy_mask), np.asarray(class_mask)
    step = max(1, CHUNK_VOXELS // max(1, occ_v[0].size)) if occ_v.ndim > 1 else max(1, occ_v.size)
    parts, part_counts = [], []
    for z0 in range(0, occ_v.shape[0], step):  # (particle, class) voxel counts per chunk of Z planes
        occ = occ_v[z0 : z0 + step].ravel()
        sel = occ != 0
        if sel.any():
            pairs = np.stack([occ[sel].astype(np.int64), cls_v[z0 : z0 + step].ravel()[sel].astype(np.int64)], axis=1)
            u, c = np.unique(pairs, axis=0, return_counts=True)
            parts.append(u)
            part_counts.append(c)
    if not parts:
        return {}
    uniq, inv = np.unique(np.concatenate(parts), axis=0, return_inverse=True)
    cnt = np.bincount(inv.ravel(), weights=np.concatenate(part_counts), minlength=len(uniq)).astype(np.int64)
    # prefer non-zero classes, then the most frequent, then the smallest class id
    order = np.lexsort((uniq[:, 1], -cnt, uniq[:, 1] == 0, uniq[:, 0]))
    u = uniq[order]
    first = np.ones(len(u), dtype=bool)
    first[1:] = u[1:, 0] != u[:-1, 0]
    return {int(p): int(c) for p, c in u[first]}


def class_ids_from_mask(particle_ids, class_mask: np.ndarray, occupancy_mask: np.ndarray) -> np.ndarray | None:
    """Each particle's class id from the class mask on its occupancy voxels (:func:`particle_classes`), for
    lists that carry class names only (SHREC); ``None`` when a particle has no class there."""
    pc = particle_classes(class_mask, occupancy_mask)
    new = np.array([pc.get(int(p), 0) for p in particle_ids], dtype=np.int64)
    return None if (new == 0).any() else new


def one_to_one(names, ids) -> bool:
    """Every name goes with one id and every id with one name."""
    pairs = set(zip(names, (int(i) for i in ids)))
    return len(pairs) == len({n for n, _ in pairs}) == len({i for _, i in pairs})


def claim_centres(
    occupancy_b: np.ndarray, centres_zyx: dict[int, tuple[int, int, int]], info: BinInfo | None = None
) -> np.ndarray:
    """Rule 4 of the module doc: particle ``pid`` takes the binned voxel ``centres_zyx[pid]`` (integer
    ``(z, y, x)`` inside ``occupancy_b``), in ascending id order; returns the new occupancy mask."""
    info = info if info is not None else BinInfo()
    out = np.array(occupancy_b, copy=True)
    flat = out.reshape(-1)
    ids, counts = np.unique(flat, return_counts=True)
    n_blocks = dict(zip(ids.tolist(), counts.tolist()))
    claimed: set[int] = set()
    for pid in sorted(centres_zyx):
        idx = int(np.ravel_multi_index(tuple(int(c) for c in centres_zyx[pid]), out.shape))
        cur = int(flat[idx])
        if cur == pid:
            claimed.add(idx)
            continue
        if idx in claimed or (cur != 0 and n_blocks.get(cur, 0) <= 1):
            info.centre_conflicts.append(int(pid))
            continue
        flat[idx] = pid
        n_blocks[cur] = n_blocks.get(cur, 0) - 1
        n_blocks[pid] = n_blocks.get(pid, 0) + 1
        claimed.add(idx)
        info.centres_claimed.append(int(pid))
    return out


def bin_masks(
    class_mask: np.ndarray,
    occupancy_mask: np.ndarray | None,
    bin_factor: int,
    *,
    keep_all: bool = True,
    centres_zyx: dict[int, tuple[int, int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, BinInfo]:
    """Bin a class mask and its occupancy (instance) mask consistently (rules 3 and, with ``centres_zyx``
    (particle id -> binned centre voxel), 4 of the module doc).

    Returns ``(class_binned, occupancy_binned, info)``; ``occupancy_binned`` is ``None`` when no
    occupancy mask is given (the class mask is then binned on its own with :func:`bin_label_mask`).
    """
    info = BinInfo()
    cm = np.asarray(class_mask)
    if occupancy_mask is None:
        return bin_label_mask(cm, bin_factor, keep_all=keep_all, info=info), None, info
    om = np.asarray(occupancy_mask)
    if cm.shape != om.shape:
        raise InputError(f"class mask shape {cm.shape} differs from occupancy mask shape {om.shape}")
    occ_b = bin_label_mask(om, bin_factor, keep_all=keep_all, info=info)
    if centres_zyx:
        occ_b = claim_centres(occ_b, centres_zyx, info)
    classes = particle_classes(cm, om)
    # class vote over voxels that belong to no particle (made chunk by chunk)
    if not np.issubdtype(cm.dtype, np.integer):
        cls_b = bin_label_mask(np.where(om == 0, cm, 0).astype(cm.dtype, copy=False), bin_factor, keep_all=False)
    elif int(bin_factor) == 1:
        cls_b = np.where(om == 0, cm, 0).astype(cm.dtype, copy=False)
    else:
        cls_b = _vote_chunks(
            lambda z0, z1: np.where(om[z0:z1] == 0, cm[z0:z1], 0).astype(cm.dtype, copy=False),
            cm.shape,
            int(bin_factor),
            False,
            None,
        )
    if classes:
        ids = np.fromiter(classes.keys(), dtype=np.int64)
        vals = np.fromiter(classes.values(), dtype=np.int64)
        lut = np.zeros(int(ids.max()) + 1, dtype=cm.dtype if np.issubdtype(cm.dtype, np.integer) else np.int64)
        lut[ids] = vals
        sel = occ_b > 0
        cls_b = cls_b.copy()
        cls_b[sel] = lut[occ_b[sel].astype(np.int64)]
    return cls_b, occ_b, info


def to_binned_coordinates(points_zyx: np.ndarray, bin_factor: int, z_offset: int = 0) -> np.ndarray:
    """Original voxel coordinates ``(N, 3)`` as ``(z, y, x)`` -> the binned tomogram's voxel coordinates.

    ``x_b = (x - (B-1)/2) / B`` (same for y) and ``z_b = (z - a - (B-1)/2) / B`` with ``a = z_offset``.
    """
    p = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3)
    b = float(bin_factor)
    off = np.array([float(z_offset), 0.0, 0.0])
    return (p - off - (b - 1.0) / 2.0) / b


def binned_origin(bin_factor: int, z_offset: float = 0.0, voxel_size_a: float = 1.0) -> tuple[float, float, float]:
    """Where a grid cropped at Z index ``z_offset`` and binned by B sits in the full volume: the ``(x, y, z)``
    position of its first voxel's centre, in units of ``voxel_size_a`` (the full volume's voxel size, its voxel
    ``i`` centred at ``i x voxel size``): ``(B-1)/2``, ``(B-1)/2``, ``a + (B-1)/2`` voxels, the inverse of
    :func:`to_binned_coordinates` at 0. Written as the MRC header origin (Angstrom) of binned masks and
    tomograms, so viewers overlay them on the unbinned volume: position = origin + index x binned voxel size.
    """
    h = (float(bin_factor) - 1.0) / 2.0
    v = float(voxel_size_a)
    return (h * v, h * v, (float(z_offset) + h) * v)


def inside_binned(points_b_zyx: np.ndarray, shape_b_zyx) -> np.ndarray:
    """Boolean ``(N,)``: the binned coordinate lies in ``[-0.5, n - 0.5)`` on every axis."""
    p = np.asarray(points_b_zyx, dtype=np.float64).reshape(-1, 3)
    n = np.asarray(shape_b_zyx, dtype=np.float64)
    return np.all((p >= -0.5) & (p < n - 0.5), axis=1)


def renumber(occupancy: np.ndarray, listed_ids) -> tuple[np.ndarray, dict[int, int], list[int]]:
    """Renumber an occupancy mask: the listed particle ids (in the order given) become 1..N, the other
    non-zero ids present in the mask N+1.. (ascending).

    Returns ``(new occupancy (int64), id_map (old -> new), unlisted old ids)``.
    """
    occ = np.asarray(occupancy)
    old = [int(o) for o in listed_ids]
    present = sorted(set(np.unique(occ).tolist()) - {0})
    listed = set(old)
    extra = [int(p) for p in present if p not in listed]
    id_map = {o: i + 1 for i, o in enumerate(old + extra)}
    lut = np.zeros(int(max([0, *present, *old])) + 1, dtype=np.int64)
    for o, n in id_map.items():
        lut[o] = n
    return lut[occ], id_map, extra


@dataclass
class BinnedLabels:
    """The labels of one binned tomogram (see :func:`bin_labels`)."""

    class_mask: np.ndarray
    occupancy_mask: np.ndarray  # renumbered: listed particles 1..N, unlisted ones with voxels N+1..
    rows: np.ndarray  # (N,) indices into the input list of the particles kept, in ascending original id
    particle_ids: np.ndarray  # (N,) their new ids 1..N
    coordinates_zyx: np.ndarray  # (N, 3) their centres in the binned tomogram's voxels
    dropped_ids: list[int]  # original ids of particles whose binned centre lies outside the tomogram
    id_map: dict[int, int]  # original id -> new id
    unlisted_ids: list[int]  # new ids of particles in the mask but not in the list
    info: BinInfo


def bin_labels(
    class_mask: np.ndarray,
    occupancy_mask: np.ndarray,
    points_zyx: np.ndarray,
    particle_ids,
    bin_factor: int,
    *,
    z_range: tuple[int, int] | None = None,
    ids_in_mask: set[int] | None = None,
) -> BinnedLabels:
    """Masks and particle list of the tomogram that keeps Z indices ``z_range`` binned by ``bin_factor``.

    The masks are cropped and binned with :func:`bin_masks` (each listed particle inside the tomogram
    claims the block of its binned centre when it has a voxel in ``occupancy_mask``); particles whose
    binned centre lies outside are dropped; the kept ones are renumbered 1..N in their original id order
    (:func:`renumber`), the occupancy mask with them. ``ids_in_mask`` (the non-zero ids of the uncropped
    occupancy mask) is computed when not given.
    """
    pts = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3)
    ids = np.asarray(particle_ids).astype(np.int64).reshape(-1)
    if ids_in_mask is None:
        ids_in_mask = set(np.unique(occupancy_mask).tolist()) - {0}
    za = 0 if z_range is None else int(z_range[0])
    cls_c, occ_c = crop_z(class_mask, z_range), crop_z(occupancy_mask, z_range)
    pb = to_binned_coordinates(pts, bin_factor, z_offset=za)
    inside = inside_binned(pb, binned_shape(cls_c.shape, bin_factor))
    centres = {int(p): tuple(np.rint(c).astype(int)) for p, c in zip(ids[inside], pb[inside]) if int(p) in ids_in_mask}
    cls_b, occ_b, info = bin_masks(cls_c, occ_c, bin_factor, centres_zyx=centres)
    rows = np.flatnonzero(inside)[np.argsort(ids[inside], kind="stable")]
    occ_new, id_map, extra = renumber(occ_b, ids[rows])
    return BinnedLabels(
        class_mask=cls_b,
        occupancy_mask=occ_new,
        rows=rows,
        particle_ids=np.array([id_map[int(o)] for o in ids[rows]], dtype=np.int64),
        coordinates_zyx=pb[rows],
        dropped_ids=ids[~inside].tolist(),
        id_map=id_map,
        unlisted_ids=[id_map[p] for p in extra],
        info=info,
    )


# --------------------------------------------------------------------------------------------------
# cellular layouts: membrane mask, instance table, points (module doc, "Cellular layouts")


def bin_binary_mask(mask: np.ndarray, bin_factor: int, z_range: tuple[int, int] | None = None) -> np.ndarray:
    """Crop a 0/1 mask ``(Z, Y, X)`` to ``z_range`` and bin it by ``bin_factor``: a block is 1 when any of
    its voxels is non-zero (max-pooling; module doc). Returns a float32 0/1 array."""
    m = np.asarray(mask)
    if m.ndim != 3:
        raise InputError(f"mask must be 3-D (Z, Y, X), got shape {m.shape}")
    c = crop_z(m, z_range)
    blocks = block_view(c != 0, bin_factor)
    return blocks.any(axis=1).reshape(binned_shape(c.shape, bin_factor)).astype(np.float32)


def _new_ids(old_ids, id_map: dict[int, int]):
    """Old instance ids -> new ones (pandas nullable Int64; missing where the instance is gone)."""
    # lazy: pandas
    import pandas as pd

    return pd.array([id_map.get(int(o)) for o in old_ids], dtype="Int64")


def bin_instances(instances, id_map: dict[int, int], particle_ids: dict[int, int] | None = None):
    """``instances.csv`` of the binned occupancy mask: the rows whose instance has voxels there
    (``id_map``: old -> new occupancy id, :class:`BinnedLabels`), ``instance_id`` renumbered and sorted.
    A particle's ``item_id`` becomes its id in the binned particle list (``particle_ids``: old -> new; missing
    (empty) for a particle whose centre is outside the tomogram); membranes and filaments keep theirs.
    ``layout_instance_id`` keeps the layout's id."""
    df = instances.copy()
    df["layout_instance_id"] = df["instance_id"].astype(np.int64)
    df["instance_id"] = _new_ids(df["layout_instance_id"], id_map)
    df = df[df["instance_id"].notna()]
    df["item_id"] = df["item_id"].astype("Int64")
    if particle_ids is not None:
        part = df["kind"].isin(["particle", "membrane_protein"])
        df.loc[part, "item_id"] = _new_ids(df.loc[part, "item_id"], particle_ids)
    return df.sort_values("instance_id").reset_index(drop=True)


def bin_points(table, id_map: dict[int, int], bin_factor: int, shape_b_zyx, z_offset: int = 0):
    """Points of a table with ``x, y, z`` in layout voxels (filament polylines, subunits) in the binned
    tomogram's voxels (:func:`to_binned_coordinates`); points outside it (:func:`inside_binned`) are
    dropped, the others keep every other column (``filament_id``, point index, angles), with
    ``instance_id`` renumbered by ``id_map`` (empty if that instance has no voxel in the tomogram)."""
    df = table.copy()
    pb = to_binned_coordinates(df[["z", "y", "x"]].to_numpy(dtype=np.float64), bin_factor, z_offset)
    keep = inside_binned(pb, shape_b_zyx)
    df["z"], df["y"], df["x"] = pb.T
    df = df[keep]
    if "instance_id" in df:
        df["instance_id"] = _new_ids(df["instance_id"], id_map)
    return df.reset_index(drop=True)


def bin_membranes(membranes, id_map: dict[int, int], occupancy_b: np.ndarray, bin_factor: int, z_offset: int = 0):
    """``membranes.csv`` of the binned tomogram: the membranes with a voxel in ``occupancy_b`` (the binned,
    renumbered occupancy mask), centres moved like points (possibly outside the tomogram: a plane or a
    cut-off vesicle), ``instance_id`` renumbered, ``n_voxels`` counted in ``occupancy_b``."""
    df = membranes.copy()
    df["instance_id"] = _new_ids(df["instance_id"], id_map)
    df = df[df["instance_id"].notna()].copy()
    pb = to_binned_coordinates(df[["z", "y", "x"]].to_numpy(dtype=np.float64), bin_factor, z_offset)
    df["z"], df["y"], df["x"] = pb.T
    counts = np.bincount(np.asarray(occupancy_b, dtype=np.int64).ravel())
    ids = df["instance_id"].astype(np.int64).to_numpy()
    df["n_voxels"] = [int(counts[i]) if i < counts.size else 0 for i in ids]
    df = df[df["n_voxels"] > 0]
    return df.reset_index(drop=True)
