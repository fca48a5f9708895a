"""Scoring of particle picks against a labelled tomogram: the SHREC 2021 cryo-ET rules (default) or faket's.

Both rule sets (``docs/qc-evaluate.md`` puts them side by side) share:

- The occupancy (instance) mask holds, at each voxel, the id of the particle occupying it (0 = background).
  It is grey-dilated once with the 3-D cross (6-connected) structuring element, so each particle's region
  grows by one voxel; where regions touch, the larger id wins (``skimage.morphology.dilation`` default).
- A pick is rounded to the nearest voxel (``numpy.rint``, half to even, like Python's ``round``) and looks up
  the dilated mask there: a non-zero id is a *hit* on that particle, 0 is a false positive.
- TP = particles hit by at least one pick; duplicates = hits beyond the first on a particle;
  ``precision = TP / n_picks``, ``recall = TP / n_particles``; each particle takes the class of the *first*
  pick (in file order) that hit it, or ``background`` when missed.

``rules="shrec"`` (default): what the challenge's evaluation script (``misc/eval.py``) computes, to the last
digit (parity test: ``tests/test_evaluate.py`` runs the script):

- Picks outside the volume are clamped to its border (the script clamps to 0..511, SHREC's 512^3 volume;
  here 0..n-1 per axis, the same on a 512^3 volume) and counted in ``n_picks_clipped``.
- Excluded classes (the script's ``--skip_4v94`` / ``--skip_vesicles``): their particles leave the hits and
  the confusion matrix, but every pick stays in ``n_picks`` (a pick on an excluded particle is neither a hit
  nor a false positive, yet lowers precision). Excluded particles leave the particle count, except
  ``vesicle``: the script keeps vesicles in recall's denominator.
- A particle whose first pick is labelled ``4V94`` (or an excluded class) counts as predicted ``background``
  (the script does so for 4V94 whether it is excluded or not).
- ``mean_distance_voxels``: from the rounded, clamped first pick to the particle's centre.
- ``f1 = 1 / ((1/recall + 1/precision) / 2)`` (0 when either is 0; the script divides by zero).
- Classification statistics are pycm 3.1's on the confusion matrix of (true class, predicted class) over
  the kept particles: the classes are those present in either (``background`` included when a particle was
  missed); ``macro_*`` are pycm's macro averages over them (PPV Macro, TPR Macro, F1 Macro), ``None`` when a
  class's value is undefined (a class never predicted has precision ``None``, as pycm prints it).
  ``shrec_overall`` / ``shrec_per_class`` hold every statistic the script prints (:func:`confusion_statistics`).

``rules="faket"``: cleaner definitions:

- Picks outside the volume are an error (``clip=True`` clamps them).
- Excluded classes: their particles leave the truth, and picks that land in them are dropped (neither hit
  nor false positive nor counted in ``n_picks``).
- ``mean_distance_voxels`` from the unrounded first pick; ``f1`` the harmonic mean.
- Classification: the confusion matrix counts particles (rows: true class, columns: predicted class). Per
  class ``c``: ``precision = M[c, c] / sum_t M[t, c]`` (0 when never predicted), ``recall = M[c, c] /
  sum_p M[c, p]``, F1; macro averages over the true classes present (background not a class). The CSV adds a
  ``background`` row: false-positive picks by their predicted class (not used in the per-class numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faket.errors import InputError

__all__ = [
    "BACKGROUND",
    "RULES",
    "DEFAULT_RULES",
    "SHREC_OVERALL_STATS",
    "SHREC_CLASS_STATS",
    "confusion_statistics",
    "dilate_occupancy",
    "picks_to_voxels",
    "unbin_coordinates",
    "unbin_points",
    "picked_geometry",
    "match_pick_classes",
    "evaluate_picks",
    "evaluate_table",
    "Evaluation",
]

BACKGROUND = "background"

#: the scoring rules, one sentence each (written into the metrics JSON); ``--rules`` of faket evaluate
RULES = {
    "shrec": (
        "SHREC 2021 (the challenge's eval.py, reproduced): hit = rounded, clamped pick inside a particle's "
        "occupancy region dilated by one voxel; precision = particles found / all picks (picks on excluded "
        "particles included); recall = particles found / particles (excluded vesicles stay counted); class "
        "of a particle = class of its first pick; pycm statistics, background class included"
    ),
    "faket": (
        "faket: hit = rounded pick inside a particle's occupancy region dilated by one voxel; excluded "
        "classes leave the truth and picks on them are dropped; precision = particles found / picks; "
        "recall = particles found / particles; class of a particle = class of its first pick; macro "
        "averages over the true classes"
    ),
}
#: the rules faket evaluate applies unless told otherwise
DEFAULT_RULES = "shrec"


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


def picked_geometry(
    mask_shape: Sequence[int],
    mask_voxel_size_a: float | None,
    bin_factor: float = 1,
    z_offset: float = 0.0,
    voxel_size_a: float | None = None,
    box_zyx: Sequence[int] | None = None,
) -> tuple[float | None, tuple[int, ...] | None]:
    """Voxel size and size (Z, Y, X) of the picked tomogram, given or derived from the mask's grid.

    Defaults: the mask's voxel size x B; the mask's size // B when the tomogram is not Z-cropped and B is
    an integer (else ``None``: unknown).
    """
    if box_zyx is None and z_offset == 0 and float(bin_factor).is_integer():
        box_zyx = tuple(int(n) // int(bin_factor) for n in mask_shape)
    if voxel_size_a is None and mask_voxel_size_a is not None:
        voxel_size_a = mask_voxel_size_a * float(bin_factor)
    return voxel_size_a, (None if box_zyx is None else tuple(int(v) for v in box_zyx))


def match_pick_classes(
    names: Sequence[str] | None,
    ids: Sequence[int] | None,
    truth_labels: Sequence[str] | None,
    id_to_label: dict[int, str],
) -> list[str] | None:
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
    # lazy: scipy
    from scipy import ndimage

    occ = np.asarray(occupancy)
    fp = ndimage.generate_binary_structure(occ.ndim, 1)
    return ndimage.grey_dilation(occ, footprint=fp, mode="constant", cval=0)


def picks_to_voxels(
    points_zyx, shape: Sequence[int], *, clip: bool = False, source: str = "picks"
) -> tuple[np.ndarray, int]:
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
            f"--pred-z-offset, or pass --clip to clamp them as SHREC does)"
        )
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
    confusion: np.ndarray | None = None  # (true classes + background row, pred classes + background)
    particle_hits: np.ndarray | None = None  # per truth particle: number of picks that hit it
    pick_particle: np.ndarray | None = None  # per pick: particle id hit (0 none, -1 dropped/excluded)

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


def evaluate_picks(
    occupancy,
    particle_ids,
    points_zyx,
    *,
    truth_classes: Sequence | None = None,
    truth_zyx=None,
    pick_classes: Sequence | None = None,
    exclude_classes: Sequence[str] = (),
    dilate: bool = True,
    clip: bool = False,
    source: str = "picks",
    rules: str = DEFAULT_RULES,
    other_ids: Sequence[int] = (),
) -> Evaluation:
    """Score picks against the occupancy mask (``rules``: "shrec", the SHREC 2021 script's, or "faket"; module doc).

    Parameters
    ----------
    occupancy : (Z, Y, X) particle ids (0 = background), in the same voxel grid as the picks.
    particle_ids : (N,) id of each truth particle (the value it has in ``occupancy``).
    points_zyx : (P, 3) pick coordinates in voxels of that grid (z, y, x), in pick order.
    truth_classes : (N,) class label of each truth particle (``None``: no classification scores).
    truth_zyx : (N, 3) particle centres, for the mean pick-to-centre distance (optional).
    pick_classes : (P,) predicted class label of each pick (``None``: no classification scores).
    exclude_classes : class labels whose particles are left out (case-insensitive; module doc for each rule set).
    clip : faket rules: clamp picks outside the volume to its border instead of an error (SHREC rules always do).
    other_ids : occupancy ids of structures that are not scored particles (a cellular layout's membranes and
        filaments, ``instances.csv``): their voxels count as background, so a pick on them is a false positive.
    """
    if rules not in RULES:
        raise ValueError(f"rules must be one of {sorted(RULES)}, got {rules!r}")
    occ = np.asarray(occupancy)
    if occ.ndim != 3:
        raise InputError(f"occupancy mask must be 3-D, got shape {occ.shape}")
    if np.issubdtype(occ.dtype, np.floating):
        if occ.size and float(occ.max()) >= 2**31:
            raise InputError("occupancy mask holds ids >= 2^31; expected particle ids")
        occ_i = np.rint(occ).astype(np.int32)  # int32: 4 bytes a voxel, like the float32 mask
        if not np.array_equal(occ_i, occ):
            raise InputError("occupancy mask must hold integer particle ids (found fractional values)")
        occ = occ_i
    if occ.min() < 0:
        raise InputError("occupancy mask holds negative values; expected particle ids >= 0 (0 = background)")
    other = np.asarray(list(other_ids), dtype=np.int64)
    if other.size:
        occ = np.where(np.isin(occ, other), 0, occ)
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

    excluded = {str(c).upper() for c in exclude_classes}
    if excluded and tcls is None:
        raise InputError("--exclude-class needs class labels in the truth table")
    if rules == "shrec":
        return _evaluate_shrec(occ, ids, tcls, pts, pcls, truth_zyx, excluded, dilate, source)
    return _evaluate_faket(occ, ids, tcls, pts, pcls, truth_zyx, excluded, dilate, clip, source)


def _check_known(hit_id, id_to_row) -> None:
    unknown = sorted({int(h) for h in hit_id if h != 0 and int(h) not in id_to_row})
    if unknown:
        raise InputError(
            f"occupancy mask holds particle id {unknown[0]} (hit by a pick) that is not in the "
            f"truth table ({len(unknown)} such id(s)); mask and table do not belong together"
        )


def _n_without_voxels(occ, ids, keep) -> int:
    """Kept truth particles with no voxel in the occupancy mask (they can never be found)."""
    if not ids.size:
        return 0
    counts = np.bincount(occ.ravel(), minlength=int(ids.max()) + 1)
    has_voxels = np.array([i < counts.size and counts[i] > 0 for i in ids], dtype=bool)
    return int((~has_voxels & keep).sum())


def _evaluate_faket(occ, ids, tcls, pts, pcls, truth_zyx, excluded, dilate, clip, source) -> Evaluation:
    """faket's rules (module doc); arguments checked by :func:`evaluate_picks`."""
    n = ids.size
    vox, n_clipped = picks_to_voxels(pts, occ.shape, clip=clip, source=source)
    dil = dilate_occupancy(occ) if dilate else occ
    hit_id = dil[vox[:, 0], vox[:, 1], vox[:, 2]].astype(np.int64) if len(vox) else np.zeros(0, np.int64)

    id_to_row = {int(i): r for r, i in enumerate(ids)}
    _check_known(hit_id, id_to_row)

    # exclusions
    keep_truth = np.ones(n, dtype=bool)
    if excluded:
        keep_truth = np.array([c.upper() not in excluded for c in tcls], dtype=bool)
    row_of_pick = np.array([id_to_row.get(int(h), -1) for h in hit_id], dtype=np.int64)
    dropped = np.array([r >= 0 and not keep_truth[r] for r in row_of_pick], dtype=bool)
    pick_particle = np.where(dropped, -1, hit_id)

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
        "n_particles_without_voxels": _n_without_voxels(occ, ids, keep_truth),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mean_distance_voxels": dist,
    }

    result = Evaluation(localisation=loc, classification=None, particle_hits=hits_per_row, pick_particle=pick_particle)
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
    core = m[: len(true_order)]
    for c in true_order:
        i, j = rowi[c], col[c]
        tp_c = int(core[i, j])
        pr, rc, f = _prf(tp_c, int(core[:, j].sum()), int(core[i].sum()))
        per_class[c] = {
            "n_particles": int(core[i].sum()),
            "true_positives": tp_c,
            "n_predicted": int(core[:, j].sum()),
            "precision": pr,
            "recall": rc,
            "f1": f,
        }
    n_correct = int(sum(core[rowi[c], col[c]] for c in true_order))
    macro = {
        k: float(np.mean([v[k] for v in per_class.values()])) if per_class else 0.0
        for k in ("precision", "recall", "f1")
    }
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


# ----------------------------------------------------------------------------------------------------------
# the official SHREC 2021 rules (the challenge's eval.py, reproduced; parity-tested against the script)

#: the statistics the SHREC 2021 script prints (pycm 3.1's SUMMARY_OVERALL and SUMMARY_CLASS)
SHREC_OVERALL_STATS = (
    "ACC Macro",
    "Kappa",
    "Overall ACC",
    "SOA1(Landis & Koch)",
    "Zero-one Loss",
    "F1 Macro",
    "TPR Macro",
    "PPV Macro",
    "FPR Macro",
)
SHREC_CLASS_STATS = (
    "ACC",
    "AUC",
    "AUCI",
    "F1",
    "TPR",
    "FPR",
    "PPV",
    "TP",
    "FP",
    "FN",
    "TN",
    "N",
    "P",
    "POP",
    "TOP",
    "TON",
)

#: SHREC 2021's 4V94 label: the script scores a particle whose first pick says 4V94 as predicted background
SHREC_4V94 = "4V94"
#: SHREC 2021's vesicle label: the script's --skip_vesicles removes vesicle hits but keeps vesicles in the
#: particle count (recall's denominator)
SHREC_VESICLE = "vesicle"


def _ratio(a, b):
    return a / b if b else None


def _one_minus(v):
    return None if v is None else 1 - v


def _macro(values):
    vals = list(values)
    return None if any(v is None for v in vals) or not vals else sum(vals) / len(vals)


def _auc_interpretation(auc):
    if auc is None:
        return None
    for bound, name in ((0.6, "Poor"), (0.7, "Fair"), (0.8, "Good"), (0.9, "Very Good")):
        if auc < bound:
            return name
    return "Excellent"


def _kappa_landis_koch(kappa):
    if kappa is None:
        return None
    if kappa < 0:
        return "Poor"
    for bound, name in ((0.2, "Slight"), (0.4, "Fair"), (0.6, "Moderate"), (0.8, "Substantial")):
        if kappa < bound:
            return name
    return "Almost Perfect" if kappa <= 1 else None


def confusion_statistics(actual: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """The statistics the SHREC 2021 script prints from its ``pycm.ConfusionMatrix(actual, predicted)``,
    computed as pycm 3.1 computes them (None where pycm says "None").

    Classes: every label in ``actual`` or ``predicted`` (background included when a particle was missed);
    with a single class, pycm adds an empty ``~other~`` class, and so does this. Returns ``classes``,
    ``matrix`` (rows actual, columns predicted), ``per_class`` ({class: {stat: value}} for
    :data:`SHREC_CLASS_STATS`) and ``overall`` (:data:`SHREC_OVERALL_STATS`).
    """
    classes = sorted(set(actual) | set(predicted))
    if len(classes) == 1:
        classes.append("~other~")
    idx = {c: i for i, c in enumerate(classes)}
    m = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for a, p in zip(actual, predicted):
        m[idx[a], idx[p]] += 1
    pop = int(m.sum())
    per: dict[str, dict[str, Any]] = {}
    tnr: dict[str, Any] = {}
    racc = 0.0
    for c, i in idx.items():
        tp = int(m[i, i])
        fp = int(m[:, i].sum()) - tp
        fn = int(m[i].sum()) - tp
        tn = pop - tp - fp - fn
        tpr = _ratio(tp, tp + fn)
        tnr[c] = _ratio(tn, tn + fp)
        auc = None if tpr is None or tnr[c] is None else (tnr[c] + tpr) / 2
        per[c] = {
            "ACC": _ratio(tp + tn, pop),
            "AUC": auc,
            "AUCI": _auc_interpretation(auc),
            "F1": _ratio(2 * tp, 2 * tp + fp + fn),
            "TPR": tpr,
            "FPR": _one_minus(tnr[c]),
            "PPV": _ratio(tp, tp + fp),
            "TP": tp,
            "FP": fp,
            "FN": fn,
            "TN": tn,
            "N": tn + fp,
            "P": tp + fn,
            "POP": pop,
            "TOP": tp + fp,
            "TON": tn + fn,
        }
        racc += ((tp + fp) * (tp + fn)) / pop**2 if pop else 0.0
    correct = int(np.trace(m))
    acc = _ratio(correct, pop)
    kappa = None if acc is None or racc == 1 else (acc - racc) / (1 - racc)
    overall = {
        "ACC Macro": _macro(v["ACC"] for v in per.values()),
        "Kappa": kappa,
        "Overall ACC": acc,
        "SOA1(Landis & Koch)": _kappa_landis_koch(kappa),
        "Zero-one Loss": pop - correct,
        "F1 Macro": _macro(v["F1"] for v in per.values()),
        "TPR Macro": _macro(v["TPR"] for v in per.values()),
        "PPV Macro": _macro(v["PPV"] for v in per.values()),
        "FPR Macro": _one_minus(_macro(tnr.values())),
    }
    return {"classes": classes, "matrix": m, "per_class": per, "overall": overall}


def _evaluate_shrec(occ, ids, tcls, pts, pcls, truth_zyx, excluded, dilate, source) -> Evaluation:
    """SHREC 2021 rules (module doc); arguments checked by :func:`evaluate_picks`."""
    n = ids.size
    vox, n_clipped = picks_to_voxels(pts, occ.shape, clip=True, source=source)
    dil = dilate_occupancy(occ) if dilate else occ
    hit_id = dil[vox[:, 0], vox[:, 1], vox[:, 2]].astype(np.int64) if len(vox) else np.zeros(0, np.int64)
    id_to_row = {int(i): r for r, i in enumerate(ids)}
    _check_known(hit_id, id_to_row)
    row_of_pick = np.array([id_to_row.get(int(h), -1) for h in hit_id], dtype=np.int64)

    names = [c.upper() for c in tcls] if tcls is not None else [""] * n
    is_excl = np.array([c in excluded for c in names], dtype=bool)
    # the script: --skip_4v94 takes 4V94 out of the particle count, --skip_vesicles leaves vesicles in it
    leaves_count = is_excl & np.array([c != SHREC_VESICLE.upper() for c in names], dtype=bool)
    keep = ~is_excl
    hits: list[list[int]] = [[] for _ in range(n)]
    on_excluded = 0
    n_fp = 0
    for p, r in enumerate(row_of_pick):
        if r < 0:
            n_fp += 1
        elif keep[r]:
            hits[r].append(p)
        else:
            on_excluded += 1
    n_picks = len(pts)
    n_particles = int(n - leaves_count.sum())
    n_hits = [len(h) for h, k in zip(hits, keep) if k]
    tp = sum(1 for h in n_hits if h >= 1)
    fn = sum(1 for h in n_hits if h == 0)
    multiple = sum(1 for h in n_hits if h > 1)
    recall = tp / n_particles if n_particles else 0.0
    precision = tp / n_picks if n_picks else 0.0
    f1 = 1 / ((1 / recall + 1 / precision) / 2) if recall > 0 and precision > 0 else 0.0
    dist = None
    if truth_zyx is not None and tp:
        tz = np.asarray(truth_zyx, dtype=np.float64).reshape(-1, 3)
        # from the rounded, clamped pick (as the script measures), first pick of each found particle
        d = [float(np.linalg.norm(vox[h[0]].astype(np.float64) - tz[r])) for r, h in enumerate(hits) if h and keep[r]]
        dist = sum(d) / tp
    loc = {
        "n_picks": n_picks,
        "n_particles": n_particles,
        "true_positives": tp,
        "false_positives": n_fp,
        "false_negatives": fn,
        "n_hits": int(sum(n_hits)),
        "n_duplicates": int(sum(n_hits)) - tp,
        "n_particles_with_multiple_picks": multiple,
        "n_picks_on_excluded": on_excluded,
        "n_picks_clipped": n_clipped,
        "n_particles_without_voxels": _n_without_voxels(occ, ids, keep),
        "precision": precision,
        "recall": recall,
        "miss_rate": 1 - recall,
        "f1": f1,
        "mean_distance_voxels": dist,
    }
    result = Evaluation(
        localisation=loc,
        classification=None,
        particle_hits=np.array([len(h) for h in hits], dtype=np.int64),
        pick_particle=np.where(row_of_pick >= 0, hit_id, 0),
    )
    if tcls is None or pcls is None:
        return result

    # classification: each kept particle -> class of its first pick; missed, or first pick labelled 4V94 or an
    # excluded class -> background (the script: `pdb2num[p[0][0]] if (p and p[0][0] != '4V94') else 0`)
    no_class = excluded | {SHREC_4V94.upper()}
    actual, predicted = [], []
    for r in range(n):
        if not keep[r]:
            continue
        actual.append(tcls[r])
        first = pcls[hits[r][0]] if hits[r] else None
        predicted.append(BACKGROUND if first is None or first.upper() in no_class else first)
    st = confusion_statistics(actual, predicted)
    per_class = {}
    for c, s in st["per_class"].items():
        per_class[c] = {
            "n_particles": s["P"],
            "true_positives": s["TP"],
            "n_predicted": s["TOP"],
            "precision": s["PPV"],
            "recall": s["TPR"],
            "f1": s["F1"],
        }
    n_correct = int(np.trace(st["matrix"]))
    ov = st["overall"]
    result.classification = {
        "per_class": per_class,
        "macro_precision": ov["PPV Macro"],
        "macro_recall": ov["TPR Macro"],
        "macro_f1": ov["F1 Macro"],
        "n_correct": n_correct,
        "accuracy_over_particles": n_correct / len(actual) if actual else 0.0,
        "accuracy_over_found": n_correct / tp if tp else 0.0,
        "shrec_overall": ov,
        "shrec_per_class": st["per_class"],
    }
    result.confusion = st["matrix"]
    result.confusion_labels_true = list(st["classes"])
    result.confusion_labels_pred = list(st["classes"])
    return result


def evaluate_table(
    occupancy,
    truth,
    picks,
    *,
    bin_factor: float = 1,
    z_offset: float = 0.0,
    exclude_classes: Sequence[str] = (),
    dilate: bool = True,
    clip: bool = False,
    source: str = "picks",
    rules: str = DEFAULT_RULES,
    other_ids: Sequence[int] = (),
) -> Evaluation:
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
    return evaluate_picks(
        occupancy,
        ids,
        xyz[:, ::-1],
        truth_classes=labels,
        truth_zyx=truth_xyz[:, ::-1],
        pick_classes=pick_labels,
        exclude_classes=exclude_classes,
        dilate=dilate,
        clip=clip,
        source=source,
        rules=rules,
        other_ids=other_ids,
    )
