"""One home per contract: defaults (workflow schema, command line, core), output names, the weights kind,
voxel-size tolerances and fallback, the dataset CSV's columns."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import yaml

from faket.cli import build_parser
from faket.errors import InputError
from faket.formats import names, voxel
from faket.formats.dataset import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def schema_default(key: str):
    node = SCHEMA
    for part in key.split("."):
        node = node["properties"][part]
    return node["default"]


@pytest.fixture(scope="module")
def cli():
    """``faket <command>``'s parser by name."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices


def _param(fn, name):
    return inspect.signature(fn).parameters[name].default


# --------------------------------------------------------------------------------------------------
# defaults: schema == command line == core


def _core_defaults():
    from faket.imaging import noise as nz
    from faket.imaging.physics import PhysicsParams
    from faket.imaging.projection import project, reconstruct
    from faket.style.settings import PRESETS, StyleSettings

    return {
        "noise.content_noise": 0.25,  # the paper's CONTENT noise scale (no core default)
        "noise.snr": None,  # fitted to the reference
        "noise.spectrum": nz.DEFAULT_NOISE_SPECTRUM,
        "noise.signal_transfer": nz.DEFAULT_SIGNAL_TRANSFER,
        "noise.match": nz.DEFAULT_MATCH,
        "noise.match_spectrum": nz.DEFAULT_SPECTRUM_MATCH,
        "style.precision": StyleSettings().precision,
        "style.iterations": None,  # the preset's
        "reconstruct.filter": _param(reconstruct, "filter"),
        "project.detector_width": _param(project, "detector_width"),
        "reference.physics.defocus_um": PhysicsParams().defocus_um,
        "_paper_precision": PRESETS["paper"].precision,
    }


# schema key -> (command, option dest): the workflow passes the key as that option
SAME = {
    "noise.content_noise": ("noise", "content_noise"),
    "noise.snr": ("noise", "snr"),
    "noise.spectrum": ("noise", "noise_spectrum"),
    "noise.signal_transfer": ("noise", "signal_transfer"),
    "noise.match": ("noise", "match"),
    "noise.match_spectrum": ("noise", "match_spectrum"),
    "style.precision": ("style", "precision"),
    "style.iterations": ("style", "iterations"),
    "reconstruct.filter": ("reconstruct", "filter"),
    "project.detector_width": ("project", "detector_width"),
    "reference.physics.defocus_um": ("reference", "defocus_um"),
}

# deliberate differences: schema key -> (schema value, command, dest, command-line value, why)
WORKFLOW_CHOICES = {
    "style.weights": (
        "random",
        "style",
        "weights",
        "imagenet",
        "the embedded workflow runs offline (no ImageNet weights on the machines, README); faket "
        "style alone defaults to the paper's ImageNet weights",
    ),
    "noise.estimate": (
        "blind",
        "noise",
        "estimate",
        None,
        "the command line's None means paired with --reference-clean, else blind; the workflow "
        "never passes --reference-clean",
    ),
    "reconstruct.binnings": (
        [2],
        "reconstruct",
        "bin",
        1,
        "the workflow's training tomograms are binned by 2; one faket reconstruct call bins only when asked",
    ),
    "reconstruct.z_range": (
        [8, 56],
        "reconstruct",
        "z_range",
        None,
        "the 48-voxel specimen slab of config/layout.yaml's 64-voxel box; faket reconstruct "
        "alone keeps the whole volume",
    ),
}

# schema null = "the command's default": the workflow leaves the option out
NULL_MEANS_CLI_DEFAULT = {
    "reference.physics.dose": ("reference", "dose"),
    "style.iterations": ("style", "iterations"),
    "project.detector_width": ("project", "detector_width"),
    "layout.voxel_size_a": ("layout", "voxel_size"),
}


def test_schema_defaults_are_the_command_line_and_core_defaults(cli):
    core = _core_defaults()
    for key, (cmd, dest) in SAME.items():
        s, c = schema_default(key), cli[cmd].get_default(dest)
        assert s == c == core[key], f"{key}: schema {s!r}, faket {cmd} --{dest} {c!r}, core {core[key]!r}"
    assert cli["style"].get_default("precision") == core["_paper_precision"]


def test_workflow_choices_differ_only_where_documented(cli):
    for key, (value, cmd, dest, cli_value, why) in WORKFLOW_CHOICES.items():
        assert schema_default(key) == value, f"{key}: schema default changed; update WORKFLOW_CHOICES ({why})"
        assert cli[cmd].get_default(dest) == cli_value, f"faket {cmd} --{dest}: default changed ({why})"
    for key, (cmd, dest) in NULL_MEANS_CLI_DEFAULT.items():
        assert schema_default(key) is None, key
        assert any(dest == a.dest for a in cli[cmd]._actions), f"faket {cmd} has no option for {key}"


def test_physics_and_labels_defaults_follow_their_core(cli):
    from faket.imaging.physics import PhysicsParams

    p = PhysicsParams()
    for dest in (
        "voltage_kv",
        "cs_mm",
        "amplitude_contrast",
        "defocus_um",
        "cc_mm",
        "energy_spread_ev",
        "ice_thickness_nm",
        "ice_mfp_nm",
        "ice_phase_std",
        "mtf",
        "dose_order",
    ):
        assert cli["reference"].get_default(dest) == getattr(p, dest), dest
    assert cli["reference"].get_default("dose") == p.dose_total
    # faket labels crops and bins like faket reconstruct: both keep the whole volume by default
    assert cli["labels"].get_default("z_range") is None is cli["reconstruct"].get_default("z_range")


def test_voxel_size_fallback_is_one_number(tmp_path, run_cli):
    from faket.cli._common import voxel_size_or_assume
    from faket.formats.mrc import read_mrc
    from faket.layout import DEFAULT_VOXEL_SIZE, default_spec

    assert _param(voxel_size_or_assume, "default") == voxel.DEFAULT_VOXEL_SIZE_A == DEFAULT_VOXEL_SIZE
    assert default_spec()["voxel_size"] == voxel.DEFAULT_VOXEL_SIZE_A
    vol = tmp_path / "v.mrc"
    with mrcfile.new(vol) as m:  # no voxel size in the header
        m.set_data(np.ones((8, 12, 12), np.float32))
    rc, _, err = run_cli("project", vol, "-o", tmp_path / "ts.mrc", "--angles", "-30:30:30", "-q")
    assert rc == 0, err
    assert f"assuming {voxel.DEFAULT_VOXEL_SIZE_A:g} A" in err
    assert read_mrc(tmp_path / "ts.mrc").voxel_size_a == pytest.approx(voxel.DEFAULT_VOXEL_SIZE_A)


# --------------------------------------------------------------------------------------------------
# tolerances


def test_same_sampling_is_one_tolerance():
    from faket.imaging.sampling import SAME_SAMPLING_RTOL, plan_resample
    from faket.picker.data import other_sampling as _other_sampling

    assert SAME_SAMPLING_RTOL is voxel.SAME_SAMPLING_RTOL
    inside, outside = 10.0 * (1 + 0.8 * SAME_SAMPLING_RTOL), 10.0 * (1 + 1.5 * SAME_SAMPLING_RTOL)
    assert plan_resample((64, 64), inside, 10.0).identity
    assert not plan_resample((64, 64), outside, 10.0).identity
    assert not _other_sampling(inside, 10.0) and _other_sampling(outside, 10.0)
    assert voxel.same_sampling(None, 10.0) and voxel.same_sampling(inside, 10.0)
    assert voxel.same_grid(10.0, 10.0 * (1 + 0.5 * voxel.SAME_GRID_RTOL))
    assert not voxel.same_grid(10.0, inside) and not voxel.same_grid(None, 10.0)


def test_stack_refuses_chunks_on_another_grid(tmp_path, run_cli):
    from faket.formats.mrc import write_mrc
    from faket.formats.tiltmeta import write_tlt

    a = np.ones((2, 16, 16), np.float32)
    for name, vs, angles in (("a", 10.0, [-10, 0]), ("b", 10.0 * (1 + 2 * voxel.SAME_GRID_RTOL), [10, 20])):
        write_mrc(tmp_path / f"{name}.mrc", a, vs, image_stack=True)
        write_tlt(tmp_path / f"{name}.tlt", angles)
    rc, _, err = run_cli("stack", tmp_path / "a.mrc", tmp_path / "b.mrc", "-o", tmp_path / "s.mrc", "-q")
    assert rc == 2 and "voxel size" in err and not (tmp_path / "s.mrc").exists()


# --------------------------------------------------------------------------------------------------
# output names


TINY = {
    "box": [24, 48, 48],
    "voxel_size": 10.0,
    "slab_thickness": 16,
    "classes": [{"template": "blob3", "count": 3}],
    "vesicles": {"count": 0},
    "fiducials": {"count": 0},
}


def test_faket_layout_writes_exactly_the_named_files(tmp_path, run_cli):
    from faket.cli import layout as cli_layout
    from faket.labels import CELLULAR_FILES, CELLULAR_LAYOUT_FILES, LAYOUT_FILES

    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    rc, _, err = run_cli("layout", "--spec", spec, "-o", tmp_path / "lay", "--seed", 1, "-q")
    assert rc == 0, err
    written = {p.name for p in (tmp_path / "lay").iterdir() if p.suffix != ".json" or p.name == "classes.json"}
    assert written == set(names.LAYOUT_OUTPUTS.values()) == set(cli_layout.OUTPUT_FILES)
    assert set(cli_layout.CELLULAR_FILES) == set(names.CELLULAR_LAYOUT_OUTPUTS.values())
    # the readers' names are the writers' (faket.labels keeps its old names as the same objects)
    assert LAYOUT_FILES is names.LAYOUT_FILES and CELLULAR_LAYOUT_FILES is names.CELLULAR_LAYOUT_FILES
    assert CELLULAR_FILES is names.CELLULAR_LABEL_FILES
    assert set(CELLULAR_LAYOUT_FILES.values()) <= {
        *names.LAYOUT_OUTPUTS.values(),
        *names.CELLULAR_LAYOUT_OUTPUTS.values(),
    }


@pytest.mark.parametrize("modality", ["faket", "noisy", "baseline", "noiseless", "benchmark"])
@pytest.mark.parametrize("name_faket", [False, True])
def test_tomogram_names_parse_back(modality, name_faket):
    name = names.tomogram_file(modality, 4, name_faket=name_faket)
    assert names.parse_tomogram_file(name) == (modality, 4)
    assert Path(name).match(names.TOMOGRAM_GLOB)
    assert (name == "tomogram_bin4.mrc") == (modality == "faket" and not name_faket)


def test_rules_spell_no_output_name_of_their_own():
    """Tomogram and dataset names in the rules come from faket.formats.names (through common.smk)."""
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        code = "\n".join(re.sub(r"(^|\s)#.*$", "", ln) for ln in text.splitlines())  # without comments
        assert not re.search(r"tomogram_(\{|bin)", code), f"{smk.name} spells a tomogram name"
        assert "dataset.csv" not in code, f"{smk.name} spells the dataset CSV's name"


def test_dataset_columns_are_defined_once(tmp_path, run_cli):
    from faket.formats.copick_export import _NEEDED

    assert set(_NEEDED) <= set(COLUMNS)
    assert COLUMNS[:4] == ("tomogram", "modality", "bin", "tomogram_path")
    assert set(names.label_files(1)) | set(names.cellular_label_files(1)) <= set(COLUMNS)
    d = tmp_path / "t"
    d.mkdir()
    from faket.formats.mrc import write_mrc

    for n in (
        names.tomogram_file("faket", 2),
        names.label_files(2)["class_mask"],
        names.label_files(2)["occupancy_mask"],
    ):
        write_mrc(d / n, np.zeros((4, 8, 8), np.float32), 20.0)
    for k in ("particles_csv", "particles_star", "particle_locations", "particles_xml"):
        (d / names.label_files(2)[k]).write_text("x\n")
    rc, _, err = run_cli("dataset", d, "-o", tmp_path / names.DATASET_CSV, "-q")
    assert rc == 0, err
    header = (tmp_path / names.DATASET_CSV).read_text().splitlines()[0]
    assert tuple(header.split(",")) == COLUMNS


# --------------------------------------------------------------------------------------------------
# the weights kind: one function, read from provenance where it is reported


def test_weights_kind():
    from faket.style.settings import weights_kind

    assert weights_kind("random") == "random" and weights_kind("imagenet") == "imagenet"
    assert weights_kind("/w/mine.pth") == "file"
    assert weights_kind("/w/copy.pth", "dcbb9e9d" + "0" * 56) == "imagenet"  # torchvision's file elsewhere
    assert weights_kind("/w/mine.pth", "0" * 64) == "file"


def _sidecar(file, **weights):
    file.write_text(json.dumps({"faket_step": "style", "style": {"weights": weights}}))
    return file


def test_benchmark_reads_the_weights_kind_from_provenance(tmp_path):
    from faket.picker.benchmark import PAPER, paper_values
    from faket.workflow import styled_weights_kind

    imagenet_copy = _sidecar(tmp_path / "a.json", kind="file", path="/w/vgg.pth", sha256="dcbb9e9d" + "1" * 56)
    assert styled_weights_kind([imagenet_copy], "/w/vgg.pth") == "imagenet"
    # the config string alone would have called this .pth path the random-weights ablation
    assert paper_values("faket", styled_weights_kind([imagenet_copy], "/w/vgg.pth")) == PAPER["faket"]
    rnd = _sidecar(tmp_path / "b.json", kind="random", path=None, sha256="2" * 64)
    assert styled_weights_kind([rnd, tmp_path / "missing.json"], "imagenet") == "random"
    assert styled_weights_kind([tmp_path / "missing.json"], "random") == "random"  # a dry run: the config
    with pytest.raises(InputError, match="different VGG weights"):
        styled_weights_kind([imagenet_copy, rnd], "random")


def test_styled_tilt_series_report_their_weights_kind(tmp_path, run_cli):
    """faket style's own sidecar says what the benchmark reads (a .pth state dict: kind file; random weights:
    tests/test_style.py)."""
    import torch

    from faket.formats.mrc import write_mrc
    from faket.formats.tiltmeta import write_tlt
    from faket.style.vgg import load_vgg19_state
    from faket.workflow import styled_weights_kind

    rng = np.random.default_rng(0)
    for name in ("content", "ref"):
        write_mrc(tmp_path / f"{name}.mrc", rng.normal(size=(2, 32, 32)).astype(np.float32), 10.0, image_stack=True)
        write_tlt(tmp_path / f"{name}.tlt", [-10, 10])
    sd, _ = load_vgg19_state("random", depth=6, seed=3)  # a state dict of the first layers is enough
    torch.save(sd, tmp_path / "mine.pth")
    out = tmp_path / "styled.mrc"
    rc, _, err = run_cli(
        "style",
        tmp_path / "content.mrc",
        "--style",
        tmp_path / "ref.mrc",
        "-o",
        out,
        "--weights",
        tmp_path / "mine.pth",
        "--style-layers",
        "1,6",
        "--style-layer-weights",
        "1,1",
        "--content-layers",
        "1",
        "--content-layer-weights",
        "1",
        "--iterations",
        1,
        "--threads",
        1,
        "--invert-reference",
        "-q",
    )
    assert rc == 0, err
    assert styled_weights_kind([out.with_suffix(".json")], "imagenet") == "file"  # random weights in a .pth
