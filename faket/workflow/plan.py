"""The main workflow's plan (``workflow/rules/common.smk``): the tomograms and their seeds, the references,
Z ranges, the files each rule reads and writes, and each step's options, from a config the schema validated
and filled.

Building a :class:`MainPlan` checks everything that can be checked before a job starts (angles, given
folders, Z range against every volume, the layout spec, the data manifest and the references' checksums);
every problem is a :class:`ConfigError` naming the config key, which ``common.smk`` turns into a Snakemake
``WorkflowError``. Imports stay light: a cluster executor parses the Snakefile again in every job.
"""

from __future__ import annotations

import os
import re

from faket.errors import InputError
from faket.formats.names import (
    CELLULAR_LABEL_FILES,
    CELLULAR_LAYOUT_FILES,
    DATASET_CSV,
    FULL_LIST_FILES,
    LAYOUT_FILES,
    label_files,
    tomogram_file,
)
from faket.workflow import (
    Sha256Cache,
    draw,
    layout_box,
    layout_is_cellular,
    load_manifest,
    qc_settings,
    realism_series,
    reference_entry,
    tilt_angles,
    tilt_chunks,
    volume_shape,
)
from faket.workflow import options as opt

__all__ = ["ConfigError", "checked", "MainPlan", "RESERVED_NAMES", "SHA256_CACHE"]

# results/<name> that the workflow uses itself: no tomogram may take these names
RESERVED_NAMES = ("references", DATASET_CSV, "logs")

# where the checksums of manifest files are cached (by path, size and mtime) between Snakefile parses
SHA256_CACHE = os.path.join(".snakemake", "faket_sha256.json")

# the stem of a reference tilt-series under results/references/<id>/, by manifest kind (others: staged)
_REFERENCE_STEM = {"physics": "physics", "tomogram": "projected"}


class ConfigError(InputError):
    """A config value the workflow cannot run with: ``config key 'KEY': problem``."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"config key '{key}': {problem}")
        self.key, self.problem = key, problem


def checked(key: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; its :class:`InputError` becomes a :class:`ConfigError` naming ``key``."""
    try:
        return fn(*args, **kwargs)
    except ConfigError:
        raise
    except InputError as exc:
        raise ConfigError(key, str(exc)) from None


def _alternatives(names) -> str:
    """A wildcard constraint matching exactly ``names`` (never matches when there are none)."""
    names = [re.escape(n) for n in names]
    return "|".join(names) if names else "(?!)"


class MainPlan:
    """Everything the main rules need, from a validated ``config`` (see the module docstring)."""

    def __init__(self, config: dict, *, sha256_cache: str | os.PathLike = SHA256_CACHE):
        self.config = config
        self.angles = checked("angles", tilt_angles, config["angles"])
        self.n_tilts = len(self.angles)
        self.tomos = self._tomograms(config)
        self._box = None
        self._shapes = {}
        for t in self.tomos:
            self.z_range(t)
        # a layout spec with membranes or filaments: faket layout writes cellular label files too (random
        # layouts only; given folders have the four files of tomograms.given)
        self.cellular = any(d["given"] is None for d in self.tomos.values()) and checked(
            "layout.spec", layout_is_cellular, config["layout"]["spec"]
        )
        # references (data manifest: read, validated and checksummed by faket.manifest)
        self.manifest = checked("manifest", load_manifest, config["manifest"])
        self.manifest_root = os.path.dirname(os.path.abspath(config["manifest"]))
        sha = Sha256Cache(sha256_cache)
        for i, n in enumerate(config["reference"]["names"]):
            checked(
                f"reference.names[{i}]",
                reference_entry,
                self.manifest,
                n,
                self.manifest_root,
                source=config["manifest"],
                sha_fn=sha,
            )
        self.refs = {}  # ref id -> {"name", "kind", "defocus_um"}
        for t in self.tomos:
            n = self.reference_name(t)
            kind = self.manifest[n].kind
            self.refs[self.reference_id(t)] = {
                "name": n,
                "kind": kind,
                "defocus_um": self.defocus_um(t) if kind == "physics" else None,
            }
        if any(r["kind"] == "physics" for r in self.refs.values()):
            self.layout_box()  # the physics reference's layout uses the spec too
        for t in self.tomos:
            self.noise_opts(t)  # a bad noise.snr range stops the run here, not when the noise job starts
        self.qc = checked("qc", qc_settings, config["qc"])
        self.dataset_csv = f"results/{DATASET_CSV}"
        self.bins = config["reconstruct"]["binnings"]
        self.modalities = config["modalities"]

    # ----------------------------------------------------------------------------------------------
    # tomograms, seeds, draws

    @staticmethod
    def _tomograms(config) -> dict:
        """name -> {"seed", "given" (dict or None), "key"}: generated tomograms, then the given folders."""
        tomos = {}
        tc = config["tomograms"]
        for i in range(tc["count"]):
            tomos[f"{tc['prefix']}_{i:03d}"] = {
                "seed": config["seed"] + i,
                "given": None,
                "key": f"tomograms.count (tomogram {i})",
            }
        for j, g in enumerate(tc["given"]):
            key = f"tomograms.given[{j}]"
            if g["name"] in tomos:
                raise ConfigError(f"{key}.name", f"{g['name']!r} is used twice")
            folder = g["folder"]
            if not os.path.isdir(folder):
                raise ConfigError(f"{key}.folder", f"{folder} is not a folder")
            for k in ("volume", "class_mask", "occupancy_mask", "particles"):
                if not os.path.isfile(os.path.join(folder, g[k])):
                    raise ConfigError(f"{key}.{k}", f"{os.path.join(folder, g[k])} not found")
            seed = g["seed"] if g["seed"] is not None else config["seed"] + 1000 + j
            tomos[g["name"]] = {"seed": seed, "given": g, "key": key}
        if not tomos:
            raise ConfigError("tomograms", "no tomograms: set tomograms.count or tomograms.given")
        for t, d in tomos.items():
            if t in RESERVED_NAMES:
                raise ConfigError(d["key"], f"{t!r} is reserved (results/{t} is used by the workflow)")
        return tomos

    def tomo_seed(self, tomo: str) -> int:
        return self.tomos[tomo]["seed"]

    def draw(self, tomo: str, key: str, spec):
        """A fixed value, or one drawn for this tomogram from its seed (:func:`faket.workflow.draw`)."""
        return checked(key, draw, self.tomo_seed(tomo), key, spec)

    def tomo_constraint(self) -> str:
        return _alternatives(self.tomos)

    def ref_constraint(self) -> str:
        return _alternatives(self.refs)

    # ----------------------------------------------------------------------------------------------
    # volume shapes (for the Z crop)

    def layout_box(self) -> tuple[int, int, int]:
        """The box faket layout makes (the layout spec is validated here, before any job)."""
        if self._box is None:
            lay = self.config["layout"]
            self._box = checked("layout.spec", layout_box, lay["spec"], lay["shape_zyx"])
        return self._box

    def volume_shape(self, tomo: str) -> tuple[int, int, int]:
        g = self.tomos[tomo]["given"]
        if g is None:
            return self.layout_box()
        if tomo not in self._shapes:
            self._shapes[tomo] = checked(
                f"{self.tomos[tomo]['key']}.volume", volume_shape, os.path.join(g["folder"], g["volume"])
            )
        return self._shapes[tomo]

    def z_range(self, tomo: str) -> tuple[int, int]:
        nz = self.volume_shape(tomo)[0]
        rec = self.config["reconstruct"]
        if rec["z_range"] is None:
            return 0, nz
        a, b = rec["z_range"]
        if not 0 <= a < b <= nz:
            raise ConfigError("reconstruct.z_range", f"[{a}, {b}] must satisfy 0 <= a < b <= {nz} (volume Z of {tomo})")
        for B in rec["binnings"]:
            if (b - a) // B < 1:
                raise ConfigError("reconstruct.binnings", f"bin {B} is larger than the Z range {b - a}")
        return a, b

    def is_cellular(self, tomo: str) -> bool:
        return self.cellular and self.tomos[tomo]["given"] is None

    def tomo_pattern(self, cellular: bool) -> str:
        """Wildcard constraint: the tomograms that are (not) cellular (never matches when there are none)."""
        return _alternatives(t for t in self.tomos if self.is_cellular(t) == cellular)

    # ----------------------------------------------------------------------------------------------
    # references

    def reference_name(self, tomo: str) -> str:
        return self.draw(tomo, "reference.names", self.config["reference"]["names"])

    def defocus_um(self, tomo: str) -> float:
        return self.draw(tomo, "reference.physics.defocus_um", self.config["reference"]["physics"]["defocus_um"])

    def reference_id(self, tomo: str) -> str:
        """Folder name under results/references/: tomograms with the same reference share it."""
        name = self.reference_name(tomo)
        if self.manifest[name].kind == "physics":
            return f"{name}_df{self.defocus_um(tomo):g}"
        return name

    def reference_tilts(self, tomo: str) -> str:
        """The style / noise reference tilt-series of a tomogram."""
        rid = self.reference_id(tomo)
        stem = _REFERENCE_STEM.get(self.refs[rid]["kind"], "staged")
        return f"results/references/{rid}/{stem}.mrc"

    def ref_of(self, wildcards) -> dict:
        return self.refs[wildcards.ref]

    # ----------------------------------------------------------------------------------------------
    # per-tomogram inputs and file names

    @staticmethod
    def layout_outputs(folder: str, cellular: bool = False) -> dict[str, str]:
        """The files of a faket layout folder that the workflow reads: volume, class_mask, occupancy_mask,
        particles (+ classes, membrane_mask, instances, membranes, filaments, filament_subunits if cellular)."""
        names = {**LAYOUT_FILES, **(CELLULAR_LAYOUT_FILES if cellular else {})}
        return {k: f"{folder}/{n}" for k, n in names.items()}

    def layout_file(self, tomo: str, what: str) -> str:
        """A tomogram's layout file (what: a key of :meth:`layout_outputs`), given or made by the layout rule."""
        g = self.tomos[tomo]["given"]
        if g is not None:
            return os.path.join(g["folder"], g[what])
        return self.layout_outputs(f"results/{tomo}/layout", self.is_cellular(tomo))[what]

    def labels_inputs(self, wildcards) -> dict[str, str]:
        """The layout files faket labels reads for a tomogram (the cellular ones for a cellular layout)."""
        keys = [k for k in LAYOUT_FILES if k != "volume"]
        if self.is_cellular(wildcards.tomo):
            keys += list(CELLULAR_LAYOUT_FILES)
        return {k: self.layout_file(wildcards.tomo, k) for k in keys}

    def chunks(self) -> list[str]:
        return tilt_chunks(self.n_tilts, self.config["style"]["tilts_per_job"])

    @staticmethod
    def chunk_range(wildcards) -> str:
        return wildcards.chunk.replace("-", ":")

    @staticmethod
    def tomogram_path(tomo: str, modality: str, b) -> str:
        return f"results/{tomo}/{tomogram_file(modality, b)}"

    def labels_outputs(self, cellular: bool = False) -> list[str]:
        """Outputs of the labels rules (with the {tomo} wildcard), named by faket.formats.names."""
        names = [n for b in self.bins for n in label_files(b, cellular=cellular).values()]
        names += list(FULL_LIST_FILES.values())
        if cellular:
            names += list(CELLULAR_LABEL_FILES.values())
        return [f"results/{{tomo}}/{n}" for n in names]

    def labels_of(self, tomo: str) -> list[str]:
        return [p.format(tomo=tomo) for p in self.labels_outputs(self.is_cellular(tomo))]

    def tomograms_of(self, tomo: str) -> list[str]:
        return [self.tomogram_path(tomo, m, b) for m in self.modalities for b in self.bins]

    def final_outputs(self) -> list[str]:
        out = [self.dataset_csv]
        for t in self.tomos:
            out += self.tomograms_of(t) + self.labels_of(t)
            if self.qc["enabled"]:
                out.append(f"results/{t}/qc/metrics.json")
            if self.qc["realism"] and self.realism_series(t):
                out.append(f"results/{t}/qc/realism/realism.json")
        if self.config["export"]["copick"]:
            out.append("results/copick/copick_config.json")
        if self.config["export"]["relion"]:
            out.append("results/relion/tomograms.star")
        return out

    # ----------------------------------------------------------------------------------------------
    # command-line options of the steps (faket.workflow.options)

    def layout_opts(self) -> str:
        return opt.layout_opts(self.config["layout"])

    def project_opts(self) -> str:
        return opt.project_opts(self.config["project"])

    def physics_opts(self, ref: str) -> str:
        return opt.physics_opts(
            {"defocus_um": self.refs[ref]["defocus_um"], "dose": self.config["reference"]["physics"]["dose"]}
        )

    def noise_opts(self, tomo: str) -> str:
        return opt.noise_opts(self.config["noise"], self.draw(tomo, "noise.snr", self.config["noise"]["snr"]))

    def z_range_opt(self, tomo: str) -> str:
        return opt.z_range_opts(self.z_range(tomo), self.volume_shape(tomo)[0])

    def reference_pixel_opt(self, tomo: str, flag: str) -> str:
        """``flag A`` from the manifest's pixel_size_a of the tomogram's reference ("" when empty); faket noise /
        style use it only when the reference's header has no pixel size."""
        return opt.pixel_size_opt(flag, self.manifest[self.refs[self.reference_id(tomo)]["name"]].pixel_size_a)

    def style_opts(self, tomo: str) -> str:
        cache = (
            f"results/references/{self.reference_id(tomo)}/style_cache" if self.config["style"]["style_cache"] else None
        )
        return opt.style_opts(self.config["style"], cache)

    @staticmethod
    def labels_opts(wildcards, input) -> str:
        return opt.labels_input_opts(input)

    # ----------------------------------------------------------------------------------------------
    # QC

    def qc_tomogram(self, tomo: str) -> str:
        """The tomogram shown by QC: the faket modality if made, else the first; the first binning."""
        mod = "faket" if "faket" in self.modalities else self.modalities[0]
        return self.tomogram_path(tomo, mod, self.bins[0])

    def qc_inputs(self, wildcards) -> dict[str, str]:
        t = wildcards.tomo
        b = label_files(self.bins[0])
        d = {
            "noiseless": f"results/{t}/tiltseries/noiseless.mrc",
            "content": f"results/{t}/tiltseries/content.mrc",
            "noisy": f"results/{t}/tiltseries/noisy.mrc",
            "reference": self.reference_tilts(t),
            "tomogram": self.qc_tomogram(t),
            "class_mask": f"results/{t}/{b['class_mask']}",
            "particles": f"results/{t}/{b['particles_csv']}",
        }
        if "faket" in self.modalities:
            d["styled"] = f"results/{t}/tiltseries/faket.mrc"
        return d

    @staticmethod
    def qc_opts(wildcards, input) -> str:
        return opt.qc_input_opts(input)

    # ----------------------------------------------------------------------------------------------
    # realism (faket realism against the tomogram's real reference)

    def realism_series(self, tomo: str) -> list[tuple[str, str]]:
        """``(name, file stem)`` of the tilt-series faket realism measures for ``tomo`` (none for a physics
        reference)."""
        return realism_series(self.modalities, self.refs[self.reference_id(tomo)]["kind"])

    def realism_inputs(self, wildcards) -> dict[str, str]:
        """faket realism's inputs: the tomogram's tilt-series it measures and its real reference."""
        t = wildcards.tomo
        d = {stem: f"results/{t}/tiltseries/{stem}.mrc" for _, stem in self.realism_series(t)}
        d["real"] = self.reference_tilts(t)
        return d

    def realism_opts(self, wildcards, input) -> str:
        """GENERATED --name NAME ... --real REAL [--real-pixel-size A from the manifest]."""
        t = wildcards.tomo
        opts = [f"{input[stem]} --name {name}" for name, stem in self.realism_series(t)]
        opts.append(f"--real {input.real}")
        px = self.reference_pixel_opt(t, "--real-pixel-size")
        if px:
            opts.append(px)
        return " ".join(opts)
