"""A picker's training set: tomograms and class masks checked and put together (arrays in, arrays out).

Class ids are the values of the class masks (0 = background); particle tables, where given, name them and
give the mean particle size per class (voxels of the mask per particle), which localisation's minimum
cluster sizes use. When fine-tuning (``init``: the checkpoint of a trained picker), the classes are mapped
onto the model's by name, so a user's own annotations with other class ids train the right outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from faket.errors import InputError
from faket.formats.voxel import same_sampling


# two voxel sizes (A) are the same sampling when they differ by at most this fraction
def other_sampling(a: float | None, b: float | None) -> bool:
    """Two voxel sizes (A, either may be unknown) that are not the same sampling (:func:`faket.formats.voxel.same_sampling`)."""
    return not same_sampling(a, b)


@dataclass
class TrainingItem:
    """One training tomogram: its array, voxel size, class mask, particle table (or None) and their names
    (file names, for messages)."""

    volume: np.ndarray
    mask: np.ndarray
    voxel_size_a: float | None = None
    particles: pd.DataFrame | None = None
    name: str = "tomogram"
    mask_name: str = "class mask"
    particles_name: str = "particles"


@dataclass
class TrainingSet:
    volumes: list[np.ndarray]
    masks: list[np.ndarray]
    n_out: int
    class_names: dict[int, str] = field(default_factory=dict)
    class_sizes: dict[int, float] = field(default_factory=dict)
    voxel_size_a: float | None = None
    remapped: dict[str, dict[int, int]] = field(default_factory=dict)


def _remap(mask: np.ndarray, table: pd.DataFrame, model_ids: Mapping[str, int], where: str) -> tuple[np.ndarray, dict]:
    """The mask's class ids replaced by the model's ids of the same class names."""
    mapping = {}
    for cid, cname in zip(table["class_id"], table["class_name"]):
        cid, cname = int(cid), str(cname)
        if cname.lower() not in model_ids:
            raise InputError(
                f"{where}: class {cname!r} is not a class of the initial model (its classes: "
                f"{', '.join(sorted(model_ids)) or 'none'})"
            )
        mapping[cid] = model_ids[cname.lower()]
    present = {int(c) for c in np.unique(mask) if c > 0}
    unnamed = sorted(present - set(mapping))
    if unnamed:
        raise InputError(
            f"{where}: class mask holds id {unnamed[0]}, which no particle of its table names; "
            "fine-tuning maps classes onto the initial model's by name"
        )
    lut = np.zeros(int(mask.max()) + 1, np.int64)
    for a, b in mapping.items():
        if a < lut.size:
            lut[a] = b
    return lut[mask], {a: b for a, b in mapping.items() if a in present}


def training_set(items: Sequence[TrainingItem], *, patch: int, init: Mapping[str, Any] | None = None) -> TrainingSet:
    """Check and assemble the training tomograms (InputError naming the file on a problem).

    ``init``: the initial model's checkpoint metadata (``n_out``, ``class_names``, ``class_sizes``,
    ``voxel_size_a``), when fine-tuning: class ids follow its names, the voxel size must be its own, the
    output count is its own; class sizes measured here replace its sizes of the same classes.
    """
    if not items:
        raise InputError("no training data: pass --tomogram/--class-mask pairs or --dataset")
    model_ids = None
    voxel = None
    if init is not None:
        model_ids = {str(n).lower(): int(c) for c, n in (init.get("class_names") or {}).items()}
        voxel = init.get("voxel_size_a")
    vols, masks, names, num, den, remapped = [], [], {}, {}, {}, {}
    for it in items:
        v = np.asarray(it.volume)
        lab = np.asarray(it.mask)
        if v.shape != lab.shape:
            raise InputError(
                f"{it.mask_name}: class mask shape {lab.shape} differs from its tomogram {it.name} {v.shape}"
            )
        if min(v.shape) < patch:
            raise InputError(f"{it.name}: tomogram {v.shape} is smaller than --patch {patch}")
        if (lab < 0).any() or (lab != np.round(lab)).any():
            raise InputError(f"{it.mask_name}: a class mask holds non-negative integer class ids")
        lab = lab.astype(np.int64)
        if lab.max() == 0:
            raise InputError(f"{it.mask_name}: class mask has no particles (all background)")
        if other_sampling(it.voxel_size_a, voxel):
            what = "the initial model's" if init is not None else "the first training tomogram's"
            raise InputError(
                f"{it.name}: voxel size {it.voxel_size_a:g} A differs from {what} {voxel:g} A; train on one sampling"
            )
        voxel = voxel or it.voxel_size_a
        df = it.particles
        if df is not None:
            if model_ids is not None:
                lab, remapped[it.name] = _remap(lab, df, model_ids, it.particles_name)
                df = df.assign(class_id=[model_ids[str(n).lower()] for n in df["class_name"]])
            for cid, cname in zip(df["class_id"], df["class_name"]):
                if names.setdefault(int(cid), str(cname)) != str(cname):
                    raise InputError(
                        f"{it.particles_name}: class {int(cid)} is called {cname!r} here but "
                        f"{names[int(cid)]!r} in another table"
                    )
            ids, counts = np.unique(lab[lab > 0], return_counts=True)
            per = df.groupby("class_id").size()
            for c, n in zip(ids, counts):
                if int(c) in per.index:
                    num[int(c)] = num.get(int(c), 0) + int(n)
                    den[int(c)] = den.get(int(c), 0) + int(per[int(c)])
        vols.append(v)
        masks.append(lab)
    n_out = int(max(int(m.max()) for m in masks)) + 1
    if names:
        n_out = max(n_out, max(names) + 1)
    sizes = {c: num[c] / den[c] for c in num if den[c]}
    if init is not None:
        model_n = int(init["n_out"])
        if n_out > model_n:
            raise InputError(
                f"{items[0].mask_name}: class ids up to {n_out - 1}, but the initial model has {model_n - 1} classes"
            )
        n_out = model_n
        names = {**{int(c): str(n) for c, n in (init.get("class_names") or {}).items()}, **names}
        sizes = {**{int(c): float(s) for c, s in (init.get("class_sizes") or {}).items()}, **sizes}
    return TrainingSet(vols, masks, n_out, names, sizes, voxel, remapped)
