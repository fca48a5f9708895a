"""``faket dataset``: index every tomogram of a run and its label files in one CSV for training code."""

from __future__ import annotations

import argparse

from faket.cli._common import add_common_args

HELP = "index tomograms and their label files (one CSV row per tomogram, modality and binning)"
DESCRIPTION = """\
faket dataset results/ -o results/dataset.csv            (every sub-folder that holds tomogram_*.mrc)
faket dataset results/tomo_000 results/tomo_001 -o results/dataset.csv

Each tomogram folder holds (names as the workflow writes them):
  tomogram_bin<B>.mrc (modality faket), tomogram_<modality>_bin<B>.mrc (noiseless, baseline, noisy, ...),
  class_mask_bin<B>.mrc, occupancy_mask_bin<B>.mrc, particles_bin<B>.csv, particles_bin<B>.star,
  particle_locations_bin<B>.txt, particles_bin<B>.xml (DeepFinder object list).
and, from a cellular layout (membranes, filaments; docs/cellular-layouts.md), membrane_mask_bin<B>.mrc,
instances_bin<B>.csv, membranes_bin<B>.csv, filaments_bin<B>.csv/.star, filament_subunits_bin<B>.csv/.star
and classes.json.
One row per tomogram file with columns
  tomogram,modality,bin,tomogram_path,class_mask,occupancy_mask,particles_csv,particles_star,
  particle_locations,particles_xml,shape_z,shape_y,shape_x,voxel_size_a,n_particles,
  membrane_mask,instances,membranes,filaments,filaments_star,filament_subunits,filament_subunits_star,classes
(the cellular columns are empty when the folder has no such file).
Paths are relative to the CSV's folder. A tomogram whose label files are missing, or whose masks differ
in shape from it, is an error (nothing written).
"""


def _columns() -> list[str]:
    """The CSV's columns, named by faket.labels (imported here: building the CLI parser stays light)."""
    from faket.labels import CELLULAR_FILES, cellular_label_files, label_files

    return (["tomogram", "modality", "bin", "tomogram_path", *label_files(1), "shape_z", "shape_y", "shape_x",
             "voxel_size_a", "n_particles"] + list(cellular_label_files(1)) + list(CELLULAR_FILES))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="+",
                   help="tomogram folders, or one results folder whose sub-folders are tomograms")
    p.add_argument("-o", "--output", required=True, help="dataset CSV")
    add_common_args(p, seed=False, threads=False)


def _count_particles(path) -> int:
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return max(0, len([r for r in rows if r]) - 1)


def index_folder(folder, out_dir) -> list[dict]:
    import os
    from pathlib import Path

    from faket.errors import InputError
    from faket.formats.mrc import read_mrc_header
    from faket.labels import CELLULAR_FILES, cellular_label_files, label_files
    from faket.workflow import parse_tomogram_file

    folder = Path(folder)
    rows = []
    for t in sorted(folder.iterdir()):
        parsed = parse_tomogram_file(t.name)
        if parsed is None:
            continue
        mod, b = parsed
        files = {k: folder / n for k, n in label_files(b).items()}
        for k, f in files.items():
            if not f.is_file():
                raise InputError(f"{t}: label file {f.name} is missing (run faket labels for bin {b})")
        optional = {k: folder / n for k, n in {**cellular_label_files(b), **CELLULAR_FILES}.items()}
        optional = {k: f for k, f in optional.items() if f.is_file()}
        shape, vs = read_mrc_header(t, what="tomogram")
        for k in ("class_mask", "occupancy_mask", "membrane_mask"):
            if k not in files and k not in optional:
                continue
            s, _ = read_mrc_header(files.get(k, optional.get(k)), what=k.replace("_", " "))
            if s != shape:
                raise InputError(f"{files.get(k, optional.get(k))}: shape {s} differs from its tomogram "
                                 f"{t.name} {shape}")
        row = {"tomogram": folder.name, "modality": mod, "bin": b,
               "tomogram_path": os.path.relpath(t, out_dir)}
        row.update({k: os.path.relpath(f, out_dir) for k, f in files.items()})
        row.update({"shape_z": shape[0], "shape_y": shape[1], "shape_x": shape[2],
                    "voxel_size_a": "" if vs is None else f"{vs:g}",
                    "n_particles": _count_particles(files["particles_csv"])})
        row.update({k: os.path.relpath(optional[k], out_dir) if k in optional else ""
                    for k in (*cellular_label_files(b), *CELLULAR_FILES)})
        rows.append(row)
    return rows


def run(args) -> int:
    import csv
    import io
    from pathlib import Path

    from faket.errors import InputError
    from faket.cli._common import Step, info

    out = Path(args.output)
    out_dir = out.resolve().parent
    folders = []
    for f in map(Path, args.folders):
        if not f.is_dir():
            raise InputError(f"{f}: not a folder")
        if any(f.glob("tomogram*_bin*.mrc")):
            folders.append(f)
        else:
            subs = sorted(d for d in f.iterdir() if d.is_dir() and any(d.glob("tomogram*_bin*.mrc")))
            if not subs:
                raise InputError(f"{f}: holds no tomogram_*bin*.mrc, nor do its sub-folders")
            folders.extend(subs)
    rows = []
    for f in folders:
        rows.extend(index_folder(f.resolve(), out_dir))
    order = {"faket": 0}
    rows.sort(key=lambda r: (r["tomogram"], order.get(r["modality"], 1), r["modality"], r["bin"]))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_columns(), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    with Step("dataset", args, inputs=[]) as st:
        st.path(out).write_text(buf.getvalue())
        st.write_sidecar(out.with_suffix(".json"),
                         extra={"rows": len(rows), "tomograms": sorted({r["tomogram"] for r in rows})})
    info(args, f"{len(rows)} tomograms of {len(folders)} folders indexed in {out}")
    return 0
