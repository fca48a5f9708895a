# Helpers for the rules: config validation, the tomogram list, per-tomogram draws, references from the
# data manifest, file names. No rules here.

import csv
import hashlib
import json
import os
import random
import re
import struct

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# --------------------------------------------------------------------------------------------------
# config validation (fails before any job starts, naming the key)


def _key_path(path):
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _validate_config(cfg):
    """Schema validation (fills defaults); on an error, name the key in one line."""
    import copy

    raw = copy.deepcopy(cfg)
    try:
        validate(cfg, "../schemas/config.schema.yaml")
    except WorkflowError:
        import jsonschema
        import yaml

        schema_path = os.path.join(
            workflow.basedir, "workflow", "schemas", "config.schema.yaml"
        )
        with open(schema_path) as f:
            schema = yaml.safe_load(f)
        err = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(schema).iter_errors(raw)
        )
        if err is None:
            raise
        path = list(err.absolute_path)
        m = re.search(r"\('([^']+)' (?:was|were) unexpected\)", err.message)
        if err.validator == "additionalProperties" and m:
            allowed = ", ".join(sorted(err.schema.get("properties", {})))
            raise WorkflowError(
                f"config key '{_key_path(path + [m.group(1)])}': unknown key "
                f"(allowed here: {allowed})"
            ) from None
        raise WorkflowError(
            f"config key '{_key_path(path)}': {err.message} "
            "(see workflow/schemas/config.schema.yaml)"
        ) from None


_validate_config(config)


def config_error(key, problem):
    raise WorkflowError(f"config key '{key}': {problem}")


# --------------------------------------------------------------------------------------------------
# angles, tomograms, seeds


def parse_angles(spec):
    parts = [float(x) for x in spec.split(":")]
    start, stop = parts[0], parts[1]
    step = parts[2] if len(parts) == 3 else 1.0
    if step == 0 or (stop - start) * step < 0:
        config_error("angles", f"{spec!r} does not step from start to stop")
    n = int((stop - start) / step + 1e-9) + 1
    return [start + step * i for i in range(n)]


ANGLES = parse_angles(config["angles"])
N_TILTS = len(ANGLES)
if any(abs(a) >= 90 for a in ANGLES):
    config_error("angles", "every angle must lie strictly between -90 and 90 degrees")

TOMOS = {}  # name -> {"seed", "given" (dict or None), "index"}
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
    """A fixed value, or a value drawn for this tomogram from its seed ([low, high] uniform; lists of
    names: one of them). The same tomogram seed and key always give the same value."""
    if not isinstance(spec, list):
        return spec
    rng = random.Random(f"faket:{tomo_seed(tomo)}:{key}")
    if all(isinstance(v, str) for v in spec):
        return spec[rng.randrange(len(spec))]
    lo, hi = float(spec[0]), float(spec[1])
    if hi < lo:
        config_error(key, f"range [{lo:g}, {hi:g}] must go from low to high")
    return float(f"{lo + (hi - lo) * rng.random():.4g}")


# --------------------------------------------------------------------------------------------------
# volume shapes (for the Z crop)


def _mrc_shape_zyx(path):
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12:
        raise WorkflowError(f"{path}: not an MRC file")
    for fmt in ("<3i", ">3i"):
        nx, ny, nz = struct.unpack(fmt, head)
        if 0 < nx < 1 << 20 and 0 < ny < 1 << 20 and 0 < nz < 1 << 20:
            return nz, ny, nx
    raise WorkflowError(f"{path}: not an MRC file (bad header)")


def _spec_shape_zyx():
    spec = config["layout"]["spec"]
    if not spec:
        return None
    if not os.path.isfile(spec):
        config_error("layout.spec", f"{spec} not found")
    import yaml

    with open(spec) as f:
        d = yaml.safe_load(f) or {}
    for k in ("shape_zyx", "box_zyx", "shape", "box"):
        if isinstance(d.get(k), list) and len(d[k]) == 3:
            return tuple(int(v) for v in d[k])
    return None


def volume_shape(tomo):
    g = TOMOS[tomo]["given"]
    if g is not None:
        return _mrc_shape_zyx(os.path.join(g["folder"], g["volume"]))
    shape = config["layout"]["shape_zyx"] or _spec_shape_zyx()
    if shape is None:
        config_error(
            "layout.shape_zyx",
            "set the layout box (Z, Y, X) here or in the layout spec, so the tomogram's Z range is known",
        )
    return tuple(shape)


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


# --------------------------------------------------------------------------------------------------
# references (data manifest)

MANIFEST_COLUMNS = [
    "name",
    "kind",
    "path_or_url",
    "sha256",
    "voxel_size_a",
    "angles_file",
    "licence",
    "notes",
    "pixel_size_a",  # optional (legacy manifests end at notes)
]
_URL = re.compile(r"^(https?|ftp)://", re.IGNORECASE)


def _read_manifest(path):
    if not os.path.isfile(path):
        config_error("manifest", f"{path} not found")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].lstrip().startswith("#")]
    if not rows or [c.strip() for c in rows[0]] not in (
        MANIFEST_COLUMNS,
        MANIFEST_COLUMNS[:-1],
    ):
        config_error("manifest", f"{path}: header must be {','.join(MANIFEST_COLUMNS)}")
    return {
        r[0].strip(): dict(zip(MANIFEST_COLUMNS, (c.strip() for c in r)))
        for r in rows[1:]
    }


MANIFEST = _read_manifest(config["manifest"])
MANIFEST_ROOT = os.path.dirname(os.path.abspath(config["manifest"]))


def _sha256_cached(path):
    """sha256 of a file, cached in .snakemake/faket_sha256.json by (path, size, mtime)."""
    cache_file = os.path.join(".snakemake", "faket_sha256.json")
    try:
        with open(cache_file) as f:
            cache = json.load(f)
    except (OSError, ValueError):
        cache = {}
    st = os.stat(path)
    key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
    if key not in cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        cache[key] = h.hexdigest()
        os.makedirs(".snakemake", exist_ok=True)
        tmp = f"{cache_file}.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(cache, f)
        os.replace(tmp, cache_file)
    return cache[key]


def _check_reference(name, key):
    if name not in MANIFEST:
        config_error(
            key,
            f"{name!r} is not an entry of {config['manifest']} (known: {', '.join(sorted(MANIFEST))})",
        )
    e = MANIFEST[name]
    kind = e["kind"]
    if kind not in ("physics", "tiltseries", "micrograph", "tomogram"):
        config_error(
            key,
            f"{name!r} is a {kind}; a reference must be physics, tiltseries, micrograph or tomogram",
        )
    if kind == "physics":
        return
    src = e["path_or_url"]
    if _URL.match(src):
        config_error(
            key,
            f"{name!r} is not downloaded ({src}); download it and add a local entry with `faket manifest add`",
        )
    path = src if os.path.isabs(src) else os.path.join(MANIFEST_ROOT, src)
    if not os.path.isfile(path):
        config_error(key, f"{name!r}: file {path} is missing")
    if e["sha256"] and _sha256_cached(path) != e["sha256"].lower():
        config_error(
            key,
            f"{name!r}: file {path} was altered (sha256 differs from {config['manifest']})",
        )
    if e["angles_file"]:
        ang = (
            e["angles_file"]
            if os.path.isabs(e["angles_file"])
            else os.path.join(MANIFEST_ROOT, e["angles_file"])
        )
        if not os.path.isfile(ang):
            config_error(key, f"{name!r}: angles file {ang} is missing")


for _i, _n in enumerate(config["reference"]["names"]):
    _check_reference(_n, f"reference.names[{_i}]")


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
    if MANIFEST[name]["kind"] == "physics":
        return f"{name}_df{defocus_um(tomo):g}"
    return name


REFS = {}  # ref id -> {"name", "kind", "defocus_um"}
for _t in TOMOS:
    _n = reference_name(_t)
    REFS[reference_id(_t)] = {
        "name": _n,
        "kind": MANIFEST[_n]["kind"],
        "defocus_um": defocus_um(_t) if MANIFEST[_n]["kind"] == "physics" else None,
    }


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
# per-tomogram inputs and parameters


def layout_file(tomo, what):
    """what: volume, class_mask, occupancy_mask, particles."""
    g = TOMOS[tomo]["given"]
    if g is not None:
        return os.path.join(g["folder"], g[what])
    names = {
        "volume": "volume.mrc",
        "class_mask": "class_mask.mrc",
        "occupancy_mask": "occupancy_mask.mrc",
        "particles": "particles.csv",
    }
    return f"results/{tomo}/layout/{names[what]}"


def snr_opt(tomo):
    snr = draw(tomo, "noise.snr", config["noise"]["snr"])
    return "" if snr is None else f"--snr {snr:g}"


def z_range_opt(tomo):
    a, b = z_range(tomo)
    return f"--z-range {a}:{b} --volume-z {volume_shape(tomo)[0]}"


def chunks():
    k = config["style"]["tilts_per_job"]
    if k <= 0 or k >= N_TILTS:
        return [f"0-{N_TILTS}"]
    return [f"{a}-{min(a + k, N_TILTS)}" for a in range(0, N_TILTS, k)]


def chunk_range(wildcards):
    return wildcards.chunk.replace("-", ":")


def tiltseries_of(modality):
    return f"results/{{tomo}}/tiltseries/{modality}.mrc"


def tomogram_path(tomo, modality, b):
    if modality == "faket":
        return f"results/{tomo}/tomogram_bin{b}.mrc"
    return f"results/{tomo}/tomogram_{modality}_bin{b}.mrc"


BINS = config["reconstruct"]["binnings"]
MODALITIES = config["modalities"]


LABEL_PATTERNS = [
    "class_mask_bin{b}.mrc",
    "occupancy_mask_bin{b}.mrc",
    "particles_bin{b}.csv",
    "particles_bin{b}.star",
    "particle_locations_bin{b}.txt",
    "particles_bin{b}.xml",
]
LIST_NAMES = [
    "particles.csv",
    "particles.star",
    "particle_locations.txt",
    "particles.xml",
]


def label_outputs():
    """Outputs of the labels rule (with the {tomo} wildcard)."""
    out = [f"results/{{tomo}}/{p.format(b=b)}" for b in BINS for p in LABEL_PATTERNS]
    return out + [f"results/{{tomo}}/{n}" for n in LIST_NAMES]


def label_files(tomo):
    return [p.format(tomo=tomo) for p in label_outputs()]


def tomogram_files(tomo):
    return [tomogram_path(tomo, m, b) for m in MODALITIES for b in BINS]


def final_outputs():
    out = ["results/dataset.csv"]
    for t in TOMOS:
        out += tomogram_files(t) + label_files(t)
        if config["qc"]:
            out.append(f"results/{t}/qc/metrics.json")
    return out


# --------------------------------------------------------------------------------------------------
# command-line options of the steps, from the config (one place, so rules stay logic-free)


def layout_opts():
    opts = []
    if config["layout"]["spec"]:
        opts.append(f"--spec {config['layout']['spec']}")
    if config["layout"]["shape_zyx"]:
        opts.append(
            "--shape {}".format(",".join(str(v) for v in config["layout"]["shape_zyx"]))
        )
    if config["layout"]["voxel_size_a"]:
        opts.append(f"--voxel-size {config['layout']['voxel_size_a']:g}")
    return " ".join(opts)


def project_opts():
    w = config["project"]["detector_width"]
    return "" if w is None else f"--detector-width {w}"


def physics_opts(ref):
    r = REFS[ref]
    opts = [f"--defocus-um {r['defocus_um']:g}"]
    if config["reference"]["physics"]["dose"] is not None:
        opts.append(f"--dose {config['reference']['physics']['dose']:g}")
    return " ".join(opts)


def noise_opts(tomo):
    opts = [
        f"--estimate {config['noise']['estimate']}",
        f"--content-noise {config['noise']['content_noise']:g}",
    ]
    s = snr_opt(tomo)
    if s:
        opts.append(s)
    return " ".join(opts)


def reference_pixel_opt(tomo, flag):
    """``flag A`` from the manifest's pixel_size_a of the tomogram's reference ("" when empty); faket noise /
    style use it only when the reference's header has no pixel size."""
    ps = MANIFEST[REFS[reference_id(tomo)]["name"]].get("pixel_size_a", "")
    return f"{flag} {ps}" if ps else ""


def style_opts(tomo):
    st = config["style"]
    opts = [f"--weights {st['weights']}", f"--precision {st['precision']}"]
    if st["iterations"] is not None:
        opts.append(f"--iterations {st['iterations']}")
    if st["style_cache"]:
        opts.append(
            f"--style-cache results/references/{reference_id(tomo)}/style_cache"
        )
    return " ".join(opts)


def qc_tomogram(tomo):
    """The tomogram shown by QC: the faket modality if made, else the first; the first binning."""
    mod = "faket" if "faket" in MODALITIES else MODALITIES[0]
    return tomogram_path(tomo, mod, BINS[0])


def qc_inputs(wildcards):
    t = wildcards.tomo
    d = {
        "noiseless": f"results/{t}/tiltseries/noiseless.mrc",
        "content": f"results/{t}/tiltseries/content.mrc",
        "noisy": f"results/{t}/tiltseries/noisy.mrc",
        "reference": reference_tilts(t),
        "tomogram": qc_tomogram(t),
        "class_mask": f"results/{t}/class_mask_bin{BINS[0]}.mrc",
        "particles": f"results/{t}/particles_bin{BINS[0]}.csv",
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
