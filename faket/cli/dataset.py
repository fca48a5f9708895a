"""``faket dataset``: index every tomogram of a run and its label files in one CSV for training code."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from faket.cli._common import Step, add_common_args, info
from faket.formats.names import DATASET_COLUMNS

HELP = "index tomograms and their label files (one CSV row per tomogram, modality and binning)"
DESCRIPTION = f"""\
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
{textwrap.fill(", ".join(DATASET_COLUMNS), 104, initial_indent="  ", subsequent_indent="  ")}
(the cellular columns are empty when the folder has no such file).
Paths are relative to the CSV's folder. A tomogram whose label files are missing, or whose masks differ
in shape from it, is an error (nothing written).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="+", help="tomogram folders, or one results folder whose sub-folders are tomograms")
    p.add_argument("-o", "--output", required=True, help="dataset CSV")
    add_common_args(p, seed=False, threads=False)


def run(args) -> int:
    from faket.formats import dataset  # lazy: numpy and mrcfile (MRC headers), not needed for --help

    out = Path(args.output)
    folders = dataset.tomogram_folders(args.folders)
    rows = dataset.index(folders, out.resolve().parent)
    with Step("dataset", args, inputs=[]) as st:
        st.path(out).write_text(dataset.to_csv(rows))
        st.write_sidecar(
            out.with_suffix(".json"), extra={"rows": len(rows), "tomograms": sorted({r["tomogram"] for r in rows})}
        )
    info(args, f"{len(rows)} tomograms of {len(folders)} folders indexed in {out}")
    return 0
