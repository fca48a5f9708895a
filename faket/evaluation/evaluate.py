"""SHREC 2021-style scoring of particle picks against a labelled tomogram.

Rules (as the SHREC 2021 cryo-ET evaluation script scores; see ``docs/qc-evaluate.md``):

- The occupancy (instance) mask holds, at each voxel, the id of the particle occupying it (0 = background).
  It is grey-dilated once with the 3-D cross (6-connected) structuring element, so each particle's region
  grows by one voxel; where regions touch, the larger id wins (``skimage.morphology.dilation`` default).
- A pick is rounded to the nearest voxel (``numpy.rint``, half to even, like Python's ``round``) and looks up
  the dilated mask there: a non-zero id is a *hit* on that particle, 0 is a false positive.
- Localisation: TP = particles hit by at least one pick; FN = particles never hit; duplicates = hits beyond
  the first on a particle. ``precision = TP / n_picks`` (duplicates and false positives both lower it),
  ``recall = TP / n_particles``, F1 = their harmonic mean. The mean distance (voxels) from the first hitting
  pick to the particle centre is reported too.
- Classification: each particle gets the class of the *first* pick (in file order) that hit it, or
  ``background`` when missed. The confusion matrix counts particles (rows: true class, columns: predicted
  class). Per class ``c``: ``precision = M[c, c] / sum_t M[t, c]``, ``recall = M[c, c] / sum_p M[c, p]``
  (missed particles count against recall), F1. Macro averages are over the true classes present.
  The CSV adds a ``background`` row: false-positive picks by their predicted class (not used in the
  per-class numbers, which follow SHREC).
- Excluded classes (SHREC 2021 skipped 4V94 and vesicles): their particles leave the truth, and picks that
  land in them are dropped (neither hit nor false positive).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from faket.errors import InputError

__all__ = ["BACKGROUND", "RULES", "dilate_occupancy", "picks_to_voxels", "unbin_coordinates", "unbin_points",
           "picked_geometry", "match_pick_classes", "evaluate_picks", "evaluate_table", "Evaluation"]

BACKGROUND = "background"

#: the scoring rules in one sentence (written into the metrics JSON)
RULES = ("SHREC 2021: hit = pick inside the occupancy region of a particle dilated by one voxel; "
         "precision = particles found / picks; recall = particles found / particles; "
         "class of a particle = class of its first pick")


def unbin_coordinates(coords, bin_factor: float = 1, offset: float = 0.0) -> np.ndarray:
    """Binned coordinate -> original voxel coordinate: ``offset + c * B + (B - 1) / 2`` (CONTRIBUTING.md)."""
    c = np.asarray(coords, dtype=np.float64)
    b = float(bin_factor)
    return offset + c * b + (b - 1.0) / 2.0


def unbin_points(points_xyz, bin_factor: float = 1, z_offset: float = 0.0) -> np.ndarray:
    """``(P, 3)`` x, y, z picked in a tomogram binned by B (and Z-cropped at ``z_offset``) -> the mask grid."""
    p = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
    out = unbin_coordinates(p, bin_factor)
    out[:, 2] += float(z_offset)
    return out


def picked_geometry(mask_shape: Sequence[int], mask_voxel_size_a: float | None, bin_factor: float = 1,
                    z_offset: float = 0.0, voxel_size_a: float | None = None,
                    box_zyx: Sequence[int] | None = None) -> tuple[float | None, tuple[int, ...] | None]:
    """Voxel size and size (Z, Y, X) of the picked tomogram, given or derived from the mask's grid.

    Defaults: the mask's voxel size x B; the mask's size // B when the tomogram is not Z-cropped and B is
    an integer (else ``None``: unknown).
    """
    if box_zyx is None and z_offset == 0 and float(bin_factor).is_integer():
        box_zyx = tuple(int(n) // int(bin_factor) for n in mask_shape)
    if voxel_size_a is None and mask_voxel_size_a is not None:
        voxel_size_a = mask_voxel_size_a * float(bin_factor)
    return voxel_size_a, (None if box_zyx is None else tuple(int(v) for v in box_zyx))


def match_pick_classes(names: Sequence[str] | None, ids: Sequence[int] | None,
                       truth_labels: Sequence[str] | None, id_to_label: dict[int, str]) -> list[str] | None:
    """Pick classes in the truth's spelling: names case-insensitively, ids through the truth's id -> name
    (``None`` when the picks or the truth carry no class)."""
    if truth_labels is None:
        return None
    if names is not None:
        by_upper = {t.upper(): t for t in truth_labels}
        return [by_upper.get(n.upper(), n) for n in names]
    if ids is not None:
        return [id_to_label.get(int(i), str(int(i))) for i in ids]
    return None


def dilate_occupancy(occupancy) -> np.ndarray:
    """Grey dilation (max) by the 6-connected 3-D cross, as ``skimage.morphology.dilation`` by default."""
    from scipy import ndimage

    occ = np.asarray(occupancy)
    fp = ndimage.generate_binary_structure(occ.ndim, 1)
    return ndimage.grey_dilation(occ, footprint=fp, mode="constant", cval=0)


def picks_to_voxels(points_zyx, shape: Sequence[int], *, clip: bool = False,
                    source: str = "picks") -> tuple[np.ndarray, int]:
    """Round ``(P, 3)`` z, y, x coordinates to voxel indices inside ``shape``.

    Picks outside the volume raise :class:`InputError` (naming ``source``), or with ``clip`` are clamped
    to the border as SHREC does. Returns the indices and the number of clamped picks.
    """
    p = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3)
    if not np.isfinite(p).all():
        raise InputError(f"{source}: coordinates contain NaN/Inf")
    v = np.rint(p).astype(np.int64)
    hi = np.asarray(shape[:3], dtype=np.int64) - 1
    outside = ((v < 0) | (v > hi)).any(axis=1)
    if outside.any() and not clip:
        i = int(np.argmax(outside))
        z, y, x = p[i]
        raise InputError(
            f"{source}: {int(outside.sum())} pick(s) outside the {shape[2]}x{shape[1]}x{shape[0]} (XxYxZ) "
            f"volume, first #{i + 1} at x={x:g} y={y:g} z={z:g} voxels (check --pred-bin / "
            f"--pred-z-offset, or pass --clip to clamp them as SHREC does)")
    v = np.clip(v, 0, hi)
    return v, int(outside.sum())


def _prf(tp: float, n_pred: float, n_true: float) -> tuple[float, float, float]:
    precision = tp / n_pred if n_pred > 0 else 0.0
    recall = tp / n_true if n_true > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)


@dataclass
class Evaluation:
    """Scores of one set of picks (see module doc). ``to_dict`` gives the metrics JSON body."""

    localisation: dict[str, Any]
    classification: dict[str, Any] | None
    confusion_labels_true: list[str] = field(default_factory=list)
    confusion_labels_pred: list[str] = field(default_factory=list)
    confusion: np.ndarray | None = None          # (true classes + background row, pred classes + background)
    particle_hits: np.ndarray | None = None      # per truth particle: number of picks that hit it
    pick_particle: np.ndarray | None = None      # per pick: particle id hit (0 none, -1 dropped/excluded)

    def to_dict(self) -> dict[str, Any]:
        return {"localisation": self.localisation, "classification": self.classification}

    def confusion_csv(self) -> str:
        """Confusion matrix as CSV: first column the true class, then one column per predicted class."""
        if self.confusion is None:
            return ""
        lines = ["true\\predicted," + ",".join(_csv(c) for c in self.confusion_labels_pred)]
        for name, row in zip(self.confusion_labels_true, self.confusion):
            lines.append(_csv(name) + "," + ",".join(str(int(v)) for v in row))
        return "\n".join(lines) + "\n"


def _csv(s: str) -> str:
    s = str(s)
    return '"' + s.replace('"', '""') + '"' if any(ch in s for ch in ',"\n') else s


def evaluate_picks(occupancy, particle_ids, points_zyx, *, truth_classes: Sequence | None = None,
                   truth_zyx=None, pick_classes: Sequence | None = None,
                   exclude_classes: Sequence[str] = (), dilate: bool = True, clip: bool = False,
                   source: str = "picks") -> Evaluation:
    """Score picks against the occupancy mask (SHREC 2021 rules, module doc).

    Parameters
    ----------
    occupancy : (Z, Y, X) particle ids (0 = background), in the same voxel grid as the picks.
    particle_ids : (N,) id of each truth particle (the value it has in ``occupancy``).
    points_zyx : (P, 3) pick coordinates in voxels of that grid (z, y, x), in pick order.
    truth_classes : (N,) class label of each truth particle (``None``: no classification scores).
    truth_zyx : (N, 3) particle centres, for the mean pick-to-centre distance (optional).
    pick_classes : (P,) predicted class label of each pick (``None``: no classification scores).
    exclude_classes : class labels whose particles are left out (and picks landing in them dropped).
    """
    occ = np.asarray(occupancy)
    if occ.ndim != 3:
        raise InputError(f"occupancy mask must be 3-D, got shape {occ.shape}")
    if np.issubdtype(occ.dtype, np.floating):
        if occ.size and float(occ.max()) >= 2 ** 31:
            raise InputError("occupancy mask holds ids >= 2^31; expected particle ids")
        occ_i = np.rint(occ).astype(np.int32)  # int32: 4 bytes a voxel, like the float32 mask
        if not np.array_equal(occ_i, occ):
            raise InputError("occupancy mask must hold integer particle ids (found fractional values)")
        occ = occ_i
    if occ.min() < 0:
        raise InputError("occupancy mask holds negative values; expected particle ids >= 0 (0 = background)")
    ids = np.asarray(particle_ids).astype(np.int64).ravel()
    if ids.size and ids.min() <= 0:
        raise InputError("truth particle ids must be >= 1 (0 is background in the occupancy mask)")
    if np.unique(ids).size != ids.size:
        raise InputError("truth particle ids are not unique")
    n = ids.size
    tcls = None if truth_classes is None else [str(c) for c in truth_classes]
    if tcls is not None and len(tcls) != n:
        raise ValueError("truth_classes must have one label per particle")
    pts = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3)
    pcls = None if pick_classes is None else [str(c) for c in pick_classes]
    if pcls is not None and len(pcls) != pts.shape[0]:
        raise ValueError("pick_classes must have one label per pick")

    vox, n_clipped = picks_to_voxels(pts, occ.shape, clip=clip, source=source)
    dil = dilate_occupancy(occ) if dilate else occ
    hit_id = dil[vox[:, 0], vox[:, 1], vox[:, 2]].astype(np.int64) if len(vox) else np.zeros(0, np.int64)

    id_to_row = {int(i): r for r, i in enumerate(ids)}
    unknown = sorted({int(h) for h in hit_id if h != 0 and int(h) not in id_to_row})
    if unknown:
        raise InputError(f"occupancy mask holds particle id {unknown[0]} (hit by a pick) that is not in the "
                         f"truth table ({len(unknown)} such id(s)); mask and table do not belong together")

    # exclusions
    excluded = {str(c).upper() for c in exclude_classes}
    keep_truth = np.ones(n, dtype=bool)
    if excluded:
        if tcls is None:
            raise InputError("--exclude-class needs class labels in the truth table")
        keep_truth = np.array([c.upper() not in excluded for c in tcls], dtype=bool)
    row_of_pick = np.array([id_to_row.get(int(h), -1) for h in hit_id], dtype=np.int64)
    dropped = np.array([r >= 0 and not keep_truth[r] for r in row_of_pick], dtype=bool)
    pick_particle = np.where(dropped, -1, hit_id)

    # occupancy presence of each truth particle (particles with no voxel can never be found)
    counts = np.bincount(occ.ravel(), minlength=int(ids.max()) + 1 if n else 1)
    has_voxels = np.array([i < counts.size and counts[i] > 0 for i in ids], dtype=bool)

    hits_per_row = np.zeros(n, dtype=np.int64)
    first_pick = np.full(n, -1, dtype=np.int64)
    for p, r in enumerate(row_of_pick):
        if r < 0 or dropped[p]:
            continue
        if hits_per_row[r] == 0:
            first_pick[r] = p
        hits_per_row[r] += 1

    n_picks = int((~dropped).sum())
    n_truth = int(keep_truth.sum())
    found = (hits_per_row > 0) & keep_truth
    tp = int(found.sum())
    n_hits = int(hits_per_row[keep_truth].sum())
    n_fp = int(((row_of_pick < 0) & ~dropped).sum())
    precision, recall, f1 = _prf(tp, n_picks, n_truth)
    dist = None
    if truth_zyx is not None and tp:
        tz = np.asarray(truth_zyx, dtype=np.float64).reshape(-1, 3)
        rows = np.nonzero(found)[0]
        d = np.linalg.norm(pts[first_pick[rows]] - tz[rows], axis=1)
        dist = float(d.mean())
    loc = {
        "n_picks": n_picks,
        "n_particles": n_truth,
        "true_positives": tp,
        "false_positives": n_fp,
        "false_negatives": n_truth - tp,
        "n_hits": n_hits,
        "n_duplicates": n_hits - tp,
        "n_particles_with_multiple_picks": int(((hits_per_row > 1) & keep_truth).sum()),
        "n_picks_dropped_excluded": int(dropped.sum()),
        "n_picks_clipped": n_clipped,
        "n_particles_without_voxels": int((~has_voxels & keep_truth).sum()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mean_distance_voxels": dist,
    }

    result = Evaluation(localisation=loc, classification=None, particle_hits=hits_per_row,
                        pick_particle=pick_particle)
    if tcls is None or pcls is None:
        return result

    # classification: each kept particle -> class of its first pick, or background
    true_labels = [c for c, k in zip(tcls, keep_truth) if k]
    true_order = sorted(set(true_labels))
    pred_for = [pcls[first_pick[r]] if first_pick[r] >= 0 else BACKGROUND for r in range(n) if keep_truth[r]]
    extra_pred = sorted({c for c in pcls if c not in true_order and c != BACKGROUND})
    pred_order = true_order + extra_pred + [BACKGROUND]
    col = {c: j for j, c in enumerate(pred_order)}
    rowi = {c: i for i, c in enumerate(true_order)}
    m = np.zeros((len(true_order) + 1, len(pred_order)), dtype=np.int64)
    for t, p in zip(true_labels, pred_for):
        m[rowi[t], col[p]] += 1
    for p in range(len(pcls)):
        if row_of_pick[p] < 0 and not dropped[p]:
            m[len(true_order), col[pcls[p]] if pcls[p] in col else col[BACKGROUND]] += 1

    per_class = {}
    core = m[:len(true_order)]
    for c in true_order:
        i, j = rowi[c], col[c]
        tp_c = int(core[i, j])
        pr, rc, f = _prf(tp_c, int(core[:, j].sum()), int(core[i].sum()))
        per_class[c] = {"n_particles": int(core[i].sum()), "true_positives": tp_c,
                        "n_predicted": int(core[:, j].sum()), "precision": pr, "recall": rc, "f1": f}
    n_correct = int(sum(core[rowi[c], col[c]] for c in true_order))
    macro = {k: float(np.mean([v[k] for v in per_class.values()])) if per_class else 0.0
             for k in ("precision", "recall", "f1")}
    result.classification = {
        "per_class": per_class,
        "macro_precision": macro["precision"],
        "macro_recall": macro["recall"],
        "macro_f1": macro["f1"],
        "n_correct": n_correct,
        "accuracy_over_particles": n_correct / n_truth if n_truth else 0.0,
        "accuracy_over_found": n_correct / tp if tp else 0.0,
    }
    result.confusion = m
    result.confusion_labels_true = true_order + [BACKGROUND]
    result.confusion_labels_pred = pred_order
    return result


def evaluate_table(occupancy, truth, picks, *, bin_factor: float = 1, z_offset: float = 0.0,
                   exclude_classes: Sequence[str] = (), dilate: bool = True, clip: bool = False,
                   source: str = "picks") -> Evaluation:
    """:func:`evaluate_picks` for a truth particle table and :class:`faket.formats.particles.Picks`.

    ``truth``: a :func:`faket.formats.particles.read_particles` table whose ``particle_id`` is the occupancy id and
    x, y, z are voxels of the mask grid; picks are in a tomogram binned by ``bin_factor`` and Z-cropped at
    ``z_offset`` (original Z index), mapped back by :func:`unbin_points`.
    """
    if len(truth) == 0:
        raise InputError("truth table has no particles")
    ids = truth["particle_id"].to_numpy(dtype=np.int64)
    truth_xyz = truth[["x", "y", "z"]].to_numpy(dtype=np.float64)
    labels = [str(v) for v in truth["class_name"]]
    id_to_label = {int(c): str(n) for c, n in zip(truth["class_id"], truth["class_name"])}
    xyz = unbin_points(picks.points_xyz, bin_factor, z_offset)
    pick_labels = match_pick_classes(picks.class_names, picks.class_ids, labels, id_to_label)
    return evaluate_picks(occupancy, ids, xyz[:, ::-1], truth_classes=labels, truth_zyx=truth_xyz[:, ::-1],
                          pick_classes=pick_labels, exclude_classes=exclude_classes, dilate=dilate,
                          clip=clip, source=source)
