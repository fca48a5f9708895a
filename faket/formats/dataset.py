"""The dataset index (``results/dataset.csv``, ``faket dataset``): one row per tomogram file, modality and
binning with its label files, shape, voxel size and particle count, for training code.

The columns are defined once (:data:`COLUMNS`, from :mod:`faket.formats.names`); ``faket dataset`` writes them, the copick export and
the picker's ``--dataset`` read them. Paths in the CSV are relative to its folder.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from faket.errors import InputError
from faket.formats.mrc import read_mrc_header
from faket.formats.names import (
    CELLULAR_LABEL_FILES,
    DATASET_CELLULAR_COLUMNS,
    DATASET_COLUMNS,
    DATASET_CSV,
    DATASET_LABEL_COLUMNS,
    DATASET_TRAINING_COLUMNS,
    FAKET_MODALITY,
    TOMOGRAM_GLOB,
    cellular_label_files,
    label_files,
    parse_tomogram_file,
)

__all__ = [
    "DATASET_CSV",
    "COLUMNS",
    "LABEL_COLUMNS",
    "CELLULAR_COLUMNS",
    "SHAPE_COLUMNS",
    "TRAINING_COLUMNS",
    "tomogram_folders",
    "index_folder",
    "index",
    "to_csv",
    "read_dataset",
]

#: every column, in order (defined with the file names in :mod:`faket.formats.names`)
COLUMNS = DATASET_COLUMNS
LABEL_COLUMNS = DATASET_LABEL_COLUMNS
CELLULAR_COLUMNS = DATASET_CELLULAR_COLUMNS
SHAPE_COLUMNS = ("shape_z", "shape_y", "shape_x")

#: the columns a picker's training set needs (faket picker train --dataset)
TRAINING_COLUMNS = DATASET_TRAINING_COLUMNS

_MASKS = ("class_mask", "occupancy_mask", "membrane_mask")


def _count_rows(path) -> int:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return max(0, len([r for r in rows if r]) - 1)


def tomogram_folders(paths) -> list[Path]:
    """The folders to index: each path that holds tomograms, or else its sub-folders that do."""
    folders = []
    for f in map(Path, paths):
        if not f.is_dir():
            raise InputError(f"{f}: not a folder")
        if any(f.glob(TOMOGRAM_GLOB)):
            folders.append(f)
        else:
            subs = sorted(d for d in f.iterdir() if d.is_dir() and any(d.glob(TOMOGRAM_GLOB)))
            if not subs:
                raise InputError(f"{f}: holds no tomogram_*bin*.mrc, nor do its sub-folders")
            folders.extend(subs)
    return folders


def index_folder(folder, out_dir) -> list[dict]:
    """The rows of one tomogram folder (paths relative to ``out_dir``, the CSV's folder). A tomogram whose
    label files are missing, or whose masks differ from it in shape, is an :class:`InputError`."""
    folder = Path(folder)
    rows = []
    for t in sorted(folder.iterdir()):
        parsed = parse_tomogram_file(t.name)
        if parsed is None:
            continue
        mod, b = parsed
        files = {k: folder / n for k, n in label_files(b).items()}
        for f in files.values():
            if not f.is_file():
                raise InputError(f"{t}: label file {f.name} is missing (run faket labels for bin {b})")
        optional = {k: folder / n for k, n in {**cellular_label_files(b), **CELLULAR_LABEL_FILES}.items()}
        optional = {k: f for k, f in optional.items() if f.is_file()}
        shape, vs = read_mrc_header(t, what="tomogram")
        for k in _MASKS:
            f = files.get(k, optional.get(k))
            if f is None:
                continue
            s, _ = read_mrc_header(f, what=k.replace("_", " "))
            if s != shape:
                raise InputError(f"{f}: shape {s} differs from its tomogram {t.name} {shape}")
        row = {"tomogram": folder.name, "modality": mod, "bin": b, "tomogram_path": os.path.relpath(t, out_dir)}
        row.update({k: os.path.relpath(f, out_dir) for k, f in files.items()})
        row.update(dict(zip(SHAPE_COLUMNS, shape)))
        row.update(
            {"voxel_size_a": "" if vs is None else f"{vs:g}", "n_particles": _count_rows(files["particles_csv"])}
        )
        row.update({k: os.path.relpath(optional[k], out_dir) if k in optional else "" for k in CELLULAR_COLUMNS})
        rows.append(row)
    return rows


def index(folders, out_dir) -> list[dict]:
    """The rows of every folder, sorted by tomogram, then the faket modality first, then modality and bin."""
    rows = [r for f in folders for r in index_folder(Path(f).resolve(), out_dir)]
    order = {FAKET_MODALITY: 0}
    rows.sort(key=lambda r: (r["tomogram"], order.get(r["modality"], 1), r["modality"], r["bin"]))
    return rows


def to_csv(rows) -> str:
    """The CSV text of rows (:data:`COLUMNS`, ``\\n`` line ends)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def read_dataset(path, need=TRAINING_COLUMNS) -> list[dict]:
    """The rows of a dataset CSV (strings), refusing a file without the columns ``need``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: dataset CSV not found")
    with open(p, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{p}: not a faket dataset CSV (needs columns {', '.join(sorted(need))})")
        return list(reader)
