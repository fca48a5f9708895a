"""File names of every output, defined once: what ``faket layout``, ``faket labels`` and ``faket reconstruct``
(through the workflow) write, under which keys the readers find them (``faket labels LAYOUTDIR``, the
workflow, ``faket dataset``'s columns), and the tomogram name of a modality and binning.

Pure names (no I/O, no numpy): the command line, the Snakemake rules and the dataset index import them.
"""

from __future__ import annotations

import re

__all__ = [
    "LAYOUT_OUTPUTS",
    "CELLULAR_LAYOUT_OUTPUTS",
    "LAYOUT_FILES",
    "CELLULAR_LAYOUT_FILES",
    "label_files",
    "cellular_label_files",
    "FULL_LIST_FILES",
    "CELLULAR_LABEL_FILES",
    "tomogram_file",
    "parse_tomogram_file",
    "TOMOGRAM_GLOB",
    "FAKET_MODALITY",
    "DATASET_CSV",
    "DATASET_COLUMNS",
    "DATASET_LABEL_COLUMNS",
    "DATASET_CELLULAR_COLUMNS",
    "DATASET_TRAINING_COLUMNS",
]

# --------------------------------------------------------------------------------------------------
# faket layout OUTDIR

#: every file ``faket layout`` writes (key -> name)
LAYOUT_OUTPUTS = {
    "volume": "volume.mrc",
    "class_mask": "class_mask.mrc",
    "occupancy_mask": "occupancy_mask.mrc",
    "classes": "classes.json",
    "particles": "particles.csv",
    "particles_star": "particles.star",
    "particle_locations": "particle_locations.txt",
}

#: written too from a cellular spec (membranes or filaments; docs/cellular-layouts.md)
CELLULAR_LAYOUT_OUTPUTS = {
    "membrane_mask": "membrane_mask.mrc",
    "instances": "instances.csv",
    "membranes": "membranes.csv",
    "filaments": "filaments.csv",
    "filaments_star": "filaments.star",
    "filament_subunits": "filament_subunits.csv",
    "filament_subunits_star": "filament_subunits.star",
}

#: the files of a layout folder that ``faket labels LAYOUTDIR`` and the workflow read
LAYOUT_FILES = {k: LAYOUT_OUTPUTS[k] for k in ("volume", "class_mask", "occupancy_mask", "particles")}

#: the files of a cellular layout folder that ``faket labels`` reads too
CELLULAR_LAYOUT_FILES = {
    "classes": LAYOUT_OUTPUTS["classes"],
    **{
        k: CELLULAR_LAYOUT_OUTPUTS[k]
        for k in ("membrane_mask", "instances", "membranes", "filaments", "filament_subunits")
    },
}

# --------------------------------------------------------------------------------------------------
# faket labels OUTDIR (beside the tomograms)


def label_files(bin_factor: int, *, cellular: bool = False) -> dict[str, str]:
    """Names of the files ``faket labels`` writes for bin factor B (keys: ``faket dataset``'s columns);
    with ``cellular`` also those of a cellular layout (:func:`cellular_label_files`)."""
    b = int(bin_factor)
    out = {
        "class_mask": f"class_mask_bin{b}.mrc",
        "occupancy_mask": f"occupancy_mask_bin{b}.mrc",
        "particles_csv": f"particles_bin{b}.csv",
        "particles_star": f"particles_bin{b}.star",
        "particle_locations": f"particle_locations_bin{b}.txt",
        "particles_xml": f"particles_bin{b}.xml",
    }
    if cellular:
        out.update(cellular_label_files(b))
    return out


def cellular_label_files(bin_factor: int) -> dict[str, str]:
    """Names of the files ``faket labels`` writes for bin factor B from a cellular layout (membranes,
    filaments); keys are ``faket dataset``'s columns (empty for other layouts)."""
    b = int(bin_factor)
    return {
        "membrane_mask": f"membrane_mask_bin{b}.mrc",
        "instances": f"instances_bin{b}.csv",
        "membranes": f"membranes_bin{b}.csv",
        "filaments": f"filaments_bin{b}.csv",
        "filaments_star": f"filaments_bin{b}.star",
        "filament_subunits": f"filament_subunits_bin{b}.csv",
        "filament_subunits_star": f"filament_subunits_bin{b}.star",
    }


def instances_beside(occupancy_name: str) -> str | None:
    """The instance table written beside an occupancy mask: ``instances.csv`` beside faket layout's
    ``occupancy_mask.mrc``, ``instances_bin<B>.csv`` beside faket labels' ``occupancy_mask_bin<B>.mrc``;
    ``None`` for other names."""
    if occupancy_name == LAYOUT_OUTPUTS["occupancy_mask"]:
        return CELLULAR_LAYOUT_OUTPUTS["instances"]
    m = re.fullmatch(r"occupancy_mask_bin(\d+)\.mrc", occupancy_name)
    if m and label_files(int(m.group(1)))["occupancy_mask"] == occupancy_name:
        return cellular_label_files(int(m.group(1)))["instances"]
    return None


#: the whole particle list in the layout volume's voxels (faket labels without --no-full-lists)
FULL_LIST_FILES = {
    "particles_csv": "particles.csv",
    "particles_star": "particles.star",
    "particle_locations": "particle_locations.txt",
    "particles_xml": "particles.xml",
}

#: bin-independent files ``faket labels`` writes from a cellular layout (a copy of the class table)
CELLULAR_LABEL_FILES = {"classes": LAYOUT_OUTPUTS["classes"]}

# --------------------------------------------------------------------------------------------------
# tomograms

#: the styled modality: its tomogram is plain ``tomogram_bin<B>.mrc`` in a workflow results folder
FAKET_MODALITY = "faket"

#: every tomogram name of :func:`tomogram_file` matches this glob
TOMOGRAM_GLOB = "tomogram*_bin*.mrc"

_TOMOGRAM_FILE = re.compile(r"^tomogram(?:_(?P<mod>[A-Za-z0-9-]+))?_bin(?P<bin>\d+)\.mrc$")


def tomogram_file(modality: str, bin_factor, *, name_faket: bool = False) -> str:
    """``tomogram_bin<B>.mrc`` for the faket modality, ``tomogram_<modality>_bin<B>.mrc`` for the others; with
    ``name_faket`` (the picker benchmark, where every modality is compared) the faket one is named too.

    ``modality`` and ``bin_factor`` may be Snakemake wildcards (``"{bmod}"``, ``"{bin}"``)."""
    if modality == FAKET_MODALITY and not name_faket:
        return f"tomogram_bin{bin_factor}.mrc"
    return f"tomogram_{modality}_bin{bin_factor}.mrc"


def parse_tomogram_file(name: str) -> tuple[str, int] | None:
    """``(modality, bin)`` of a :func:`tomogram_file` name, ``None`` for other names."""
    m = _TOMOGRAM_FILE.match(name)
    if not m:
        return None
    return m.group("mod") or FAKET_MODALITY, int(m.group("bin"))


# --------------------------------------------------------------------------------------------------
# the dataset index (faket dataset; faket.formats.dataset reads and writes it)

#: its name in a results folder (the workflow writes results/dataset.csv)
DATASET_CSV = "dataset.csv"

#: label-file columns (faket labels' files at one binning), then those of a cellular layout (empty otherwise)
DATASET_LABEL_COLUMNS = tuple(label_files(1))
DATASET_CELLULAR_COLUMNS = (*cellular_label_files(1), *CELLULAR_LABEL_FILES)

#: the columns a picker's training set needs (faket picker train --dataset)
DATASET_TRAINING_COLUMNS = ("tomogram", "modality", "bin", "tomogram_path", "class_mask", "particles_csv")

#: every column, in order
DATASET_COLUMNS = (
    "tomogram",
    "modality",
    "bin",
    "tomogram_path",
    *DATASET_LABEL_COLUMNS,
    "shape_z",
    "shape_y",
    "shape_x",
    "voxel_size_a",
    "n_particles",
    *DATASET_CELLULAR_COLUMNS,
)
