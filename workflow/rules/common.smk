# Config validation and input functions for the rules (no rules here). What the package already knows
# (angles, the layout box, the data manifest, output names) comes from faket (faket/workflow.py).

import functools
import os
import re
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# the faket package of this checkout (the one the rules' environment installs)
sys.path.insert(0, workflow.basedir)
from faket import workflow as fw
from faket.workflow import options as fwo
from faket.errors import InputError
from faket.labels import CELLULAR_FILES, CELLULAR_LAYOUT_FILES, FULL_LIST_FILES, LAYOUT_FILES, label_files

# --------------------------------------------------------------------------------------------------
# config validation (fails before any job starts, naming the key)


def _validate_config(cfg):
    """Schema validation (fills defaults); on an error, name the key in one line."""
    import copy

    raw = copy.deepcopy(cfg)
    try:
        validate(cfg, "../schemas/config.schema.yaml")
    except WorkflowError:
        schema = os.path.join(
            workflow.basedir, "workflow", "schemas", "config.schema.yaml"
        )
        problem = fw.config_problem(raw, schema)
        if problem is None:
            raise
        raise WorkflowError(problem) from None


_validate_config(config)


def config_error(key, problem):
    raise WorkflowError(f"config key '{key}': {problem}")


def checked(key, fn, *args, **kwargs):
    """fn(*args, **kwargs); its InputError stops the run, naming the config key."""
    try:
        return fn(*args, **kwargs)
    except InputError as exc:
        config_error(key, str(exc))


# --------------------------------------------------------------------------------------------------
# angles, tomograms, seeds

ANGLES = checked("angles", fw.tilt_angles, config["angles"])
N_TILTS = len(ANGLES)

TOMOS = {}  # name -> {"seed", "given" (dict or None), "key"}
_tc = config["tomograms"]
for i in range(_tc["count"]):
    TOMOS[f"{_tc['prefix']}_{i:03d}"] = {
        "seed": config["seed"] + i,
        "given": None,
        "key": f"tomograms.count (tomogram {i})",
    }
for j, g in enumerate(_tc["given"]):
    key = f"tomograms.given[{j}]"
    if g["name"] in TOMOS:
        config_error(f"{key}.name", f"{g['name']!r} is used twice")
    folder = g["folder"]
    if not os.path.isdir(folder):
        config_error(f"{key}.folder", f"{folder} is not a folder")
    for k in ("volume", "class_mask", "occupancy_mask", "particles"):
        if not os.path.isfile(os.path.join(folder, g[k])):
            config_error(f"{key}.{k}", f"{os.path.join(folder, g[k])} not found")
    seed = g["seed"] if g["seed"] is not None else config["seed"] + 1000 + j
    TOMOS[g["name"]] = {"seed": seed, "given": g, "key": key}
if not TOMOS:
    config_error("tomograms", "no tomograms: set tomograms.count or tomograms.given")
for _t, _d in TOMOS.items():
    if _t in ("references", "dataset.csv", "logs"):
        config_error(
            _d["key"], f"{_t!r} is reserved (results/{_t} is used by the workflow)"
        )


def tomo_seed(tomo):
    return TOMOS[tomo]["seed"]


def draw(tomo, key, spec):
    """A fixed value, or one drawn for this tomogram from its seed (faket.workflow.draw)."""
    return checked(key, fw.draw, tomo_seed(tomo), key, spec)


# --------------------------------------------------------------------------------------------------
# volume shapes (for the Z crop)


@functools.cache
def layout_box():
    """The box faket layout makes (the layout spec is validated here, before any job)."""
    return checked(
        "layout.spec",
        fw.layout_box,
        config["layout"]["spec"],
        config["layout"]["shape_zyx"],
    )


@functools.cache
def volume_shape(tomo):
    g = TOMOS[tomo]["given"]
    if g is None:
        return layout_box()
    return checked(
        f"{TOMOS[tomo]['key']}.volume",
        fw.volume_shape,
        os.path.join(g["folder"], g["volume"]),
    )


def z_range(tomo):
    nz = volume_shape(tomo)[0]
    zr = config["reconstruct"]["z_range"]
    if zr is None:
        return 0, nz
    a, b = zr
    if not 0 <= a < b <= nz:
        config_error(
            "reconstruct.z_range",
            f"[{a}, {b}] must satisfy 0 <= a < b <= {nz} (volume Z of {tomo})",
        )
    for B in config["reconstruct"]["binnings"]:
        if (b - a) // B < 1:
            config_error(
                "reconstruct.binnings", f"bin {B} is larger than the Z range {b - a}"
            )
    return a, b


for _t in TOMOS:
    z_range(_t)


# a layout spec with membranes or filaments: faket layout writes cellular label files too (the random
# layouts only; given folders have the four files of tomograms.given)
CELLULAR = any(d["given"] is None for d in TOMOS.values()) and checked(
    "layout.spec", fw.layout_is_cellular, config["layout"]["spec"]
)


def is_cellular(tomo):
    return CELLULAR and TOMOS[tomo]["given"] is None


def tomo_pattern(cellular):
    """Wildcard constraint: the tomograms that are (not) cellular (never matches when there are none)."""
    names = [re.escape(t) for t in TOMOS if is_cellular(t) == cellular]
    return "|".join(names) if names else "(?!)"


# --------------------------------------------------------------------------------------------------
# references (data manifest: read, validated and checksummed by faket.manifest)

MANIFEST = checked("manifest", fw.load_manifest, config["manifest"])
MANIFEST_ROOT = os.path.dirname(os.path.abspath(config["manifest"]))
_sha256 = fw.Sha256Cache(os.path.join(".snakemake", "faket_sha256.json"))
for _i, _n in enumerate(config["reference"]["names"]):
    checked(
        f"reference.names[{_i}]",
        fw.reference_entry,
        MANIFEST,
        _n,
        MANIFEST_ROOT,
        source=config["manifest"],
        sha_fn=_sha256,
    )


def reference_name(tomo):
    return draw(tomo, "reference.names", config["reference"]["names"])


def defocus_um(tomo):
    return draw(
        tomo,
        "reference.physics.defocus_um",
        config["reference"]["physics"]["defocus_um"],
    )


def reference_id(tomo):
    """Folder name under results/references/: tomograms with the same reference share it."""
    name = reference_name(tomo)
    if MANIFEST[name].kind == "physics":
        return f"{name}_df{defocus_um(tomo):g}"
    return name


REFS = {}  # ref id -> {"name", "kind", "defocus_um"}
for _t in TOMOS:
    _n = reference_name(_t)
    REFS[reference_id(_t)] = {
        "name": _n,
        "kind": MANIFEST[_n].kind,
        "defocus_um": defocus_um(_t) if MANIFEST[_n].kind == "physics" else None,
    }
if any(r["kind"] == "physics" for r in REFS.values()):
    layout_box()  # the physics reference's layout uses the spec too


def reference_tilts(tomo):
    """The style / noise reference tilt-series of a tomogram."""
    rid = reference_id(tomo)
    kind = REFS[rid]["kind"]
    stem = {"physics": "physics", "tomogram": "projected"}.get(kind, "staged")
    return f"results/references/{rid}/{stem}.mrc"


wildcard_constraints:
    tomo="|".join(re.escape(t) for t in TOMOS),
    ref="|".join(re.escape(r) for r in REFS),
    chunk=r"\d+-\d+",
    bin=r"\d+",
    modality="noiseless|baseline|noisy",


def ref_of(wildcards):
    return REFS[wildcards.ref]


# --------------------------------------------------------------------------------------------------
# per-tomogram inputs and file names

BINS = config["reconstruct"]["binnings"]
MODALITIES = config["modalities"]


def layout_outputs(folder, cellular=False):
    """The files of a faket layout folder that the workflow reads: volume, class_mask, occupancy_mask,
    particles (+ classes, membrane_mask, instances, membranes, filaments, filament_subunits if cellular).
    """
    names = {**LAYOUT_FILES, **(CELLULAR_LAYOUT_FILES if cellular else {})}
    return {k: f"{folder}/{n}" for k, n in names.items()}


def layout_file(tomo, what):
    """A tomogram's layout file (what: a key of layout_outputs), given or made by the layout rule."""
    g = TOMOS[tomo]["given"]
    if g is not None:
        return os.path.join(g["folder"], g[what])
    return layout_outputs(f"results/{tomo}/layout", is_cellular(tomo))[what]


def labels_inputs(wildcards):
    """The layout files faket labels reads for a tomogram (the cellular ones for a cellular layout)."""
    keys = [k for k in LAYOUT_FILES if k != "volume"]
    if is_cellular(wildcards.tomo):
        keys += list(CELLULAR_LAYOUT_FILES)
    return {k: layout_file(wildcards.tomo, k) for k in keys}


def labels_opts(wildcards, input):
    """faket labels' input options (--class-mask, --occupancy, --particles, --membrane-mask, ...)."""
    opt = {"occupancy_mask": "occupancy"}
    return " ".join(
        f"--{opt.get(k, k).replace('_', '-')} {input[k]}" for k in input.keys()
    )


def chunks():
    return fw.tilt_chunks(N_TILTS, config["style"]["tilts_per_job"])


def chunk_range(wildcards):
    return wildcards.chunk.replace("-", ":")


def tomogram_path(tomo, modality, b):
    return f"results/{tomo}/{fw.tomogram_file(modality, b)}"


def labels_outputs(cellular=False):
    """Outputs of the labels rules (with the {tomo} wildcard), named by faket.labels."""
    names = [n for b in BINS for n in label_files(b, cellular=cellular).values()]
    names += list(FULL_LIST_FILES.values())
    if cellular:
        names += list(CELLULAR_FILES.values())
    return [f"results/{{tomo}}/{n}" for n in names]


def labels_of(tomo):
    return [p.format(tomo=tomo) for p in labels_outputs(is_cellular(tomo))]


def tomograms_of(tomo):
    return [tomogram_path(tomo, m, b) for m in MODALITIES for b in BINS]


def final_outputs():
    out = ["results/dataset.csv"]
    for t in TOMOS:
        out += tomograms_of(t) + labels_of(t)
        if config["qc"]:
            out.append(f"results/{t}/qc/metrics.json")
    if config["export"]["copick"]:
        out.append("results/copick/copick_config.json")
    return out


# --------------------------------------------------------------------------------------------------
# command-line options of the steps, from the config (one place, so rules stay logic-free)


def layout_opts():
    return fwo.layout_opts(config["layout"])


def project_opts():
    w = config["project"]["detector_width"]
    return "" if w is None else f"--detector-width {w}"


def physics_opts(ref):
    dose = config["reference"]["physics"]["dose"]
    return fwo.physics_opts({"defocus_um": REFS[ref]["defocus_um"], "dose": dose})


def z_range_opt(tomo):
    a, b = z_range(tomo)
    return f"--z-range {a}:{b} --volume-z {volume_shape(tomo)[0]}"


def noise_opts(tomo):
    return fwo.noise_opts(
        config["noise"], draw(tomo, "noise.snr", config["noise"]["snr"])
    )


def reference_pixel_opt(tomo, flag):
    """``flag A`` from the manifest's pixel_size_a of the tomogram's reference ("" when empty); faket noise /
    style use it only when the reference's header has no pixel size."""
    ps = MANIFEST[REFS[reference_id(tomo)]["name"]].pixel_size_a
    return f"{flag} {ps:g}" if ps else ""


def style_opts(tomo):
    cache = f"results/references/{reference_id(tomo)}/style_cache"
    return fwo.style_opts(
        config["style"], cache if config["style"]["style_cache"] else None
    )


def qc_tomogram(tomo):
    """The tomogram shown by QC: the faket modality if made, else the first; the first binning."""
    mod = "faket" if "faket" in MODALITIES else MODALITIES[0]
    return tomogram_path(tomo, mod, BINS[0])


def qc_inputs(wildcards):
    t = wildcards.tomo
    b = label_files(BINS[0])
    d = {
        "noiseless": f"results/{t}/tiltseries/noiseless.mrc",
        "content": f"results/{t}/tiltseries/content.mrc",
        "noisy": f"results/{t}/tiltseries/noisy.mrc",
        "reference": reference_tilts(t),
        "tomogram": qc_tomogram(t),
        "class_mask": f"results/{t}/{b['class_mask']}",
        "particles": f"results/{t}/{b['particles_csv']}",
    }
    if "faket" in MODALITIES:
        d["styled"] = f"results/{t}/tiltseries/faket.mrc"
    return d


def qc_opts(wildcards, input):
    keys = [
        "noiseless",
        "content",
        "noisy",
        "styled",
        "reference",
        "tomogram",
        "class_mask",
        "particles",
    ]
    return " ".join(
        f"--{k.replace('_', '-')} {input[k]}" for k in keys if k in input.keys()
    )
