"""Command-line options of the workflow's steps from config sections, defined once: the main workflow's rules
(``workflow/rules/common.smk`` through :class:`faket.workflow.plan.MainPlan`) and the picker benchmark's plan
(:class:`faket.picker.benchmark.Plan`) both build their ``faket layout / reference / noise / style`` options
here. Pure functions: config dicts in, option strings out (values already drawn per tomogram with
:func:`faket.workflow.draw`); ``""`` when there are none.
"""

from __future__ import annotations

from faket.errors import InputError

__all__ = [
    "PHYSICS_FLAGS",
    "layout_opts",
    "project_opts",
    "physics_opts",
    "noise_opts",
    "style_opts",
    "z_range_opts",
    "pixel_size_opt",
    "labels_input_opts",
    "qc_input_opts",
]

# faket labels' option of a layout file when it is not "--" + its key with dashes
_LABELS_OPTION = {"occupancy_mask": "occupancy"}

# faket qc's inputs, in the order of its options
QC_INPUTS = ("noiseless", "content", "noisy", "styled", "reference", "tomogram", "class_mask", "particles")

# faket reference options a config may set (key -> flag); null values are left to faket reference's defaults
PHYSICS_FLAGS = {
    "defocus_um": "--defocus-um",
    "dose": "--dose",
    "mtf": "--mtf",
    "ice_thickness_nm": "--ice-thickness-nm",
    "ice_phase_std": "--ice-phase-std",
    "amplitude_contrast": "--amplitude-contrast",
    "defocus_gradient": "--defocus-gradient",
    "voltage_kv": "--voltage-kv",
    "illumination_mrad": "--illumination-mrad",
}


def _opt(flag, value) -> str:
    return f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"


def layout_opts(layout: dict, spec: str | None = None) -> str:
    """``faket layout`` options from the ``layout`` config section (``spec``: another spec than layout.spec)."""
    spec = spec if spec is not None else layout.get("spec")
    opts = [f"--spec {spec}"] if spec else []
    if layout.get("shape_zyx"):
        opts.append("--shape " + ",".join(str(v) for v in layout["shape_zyx"]))
    if layout.get("voxel_size_a"):
        opts.append(f"--voxel-size {layout['voxel_size_a']:g}")
    return " ".join(opts)


def project_opts(project: dict) -> str:
    w = project["detector_width"]
    return "" if w is None else f"--detector-width {w}"


def physics_opts(settings: dict) -> str:
    """``faket reference`` options from physics settings (keys of :data:`PHYSICS_FLAGS`; None = its default).
    Values are fixed here: draw ranges (:func:`draw`) first."""
    unknown = sorted(set(settings) - set(PHYSICS_FLAGS))
    if unknown:
        raise InputError(f"{unknown[0]!r} is not a physics setting (known: {', '.join(PHYSICS_FLAGS)})")
    return " ".join(
        _opt(PHYSICS_FLAGS[k], float(v) if isinstance(v, int) and not isinstance(v, bool) else v)
        for k, v in settings.items()
        if v is not None
    )


def noise_opts(noise: dict, snr: float | None) -> str:
    """``faket noise``'s fit options and the (drawn) SNR (``None``: fitted to the reference)."""
    opts = [
        f"--estimate {noise['estimate']}",
        f"--content-noise {noise['content_noise']:g}",
        f"--noise-spectrum {noise['spectrum']}",
        f"--signal-transfer {noise['signal_transfer']}",
        f"--match {noise['match']}",
        f"--match-spectrum {noise['match_spectrum']}",
    ]
    if snr is not None:
        opts.append(f"--snr {snr:g}")
    return " ".join(opts)


def style_opts(style: dict, cache_dir: str | None = None) -> str:
    """``faket style``'s weights, precision, iterations and (with ``cache_dir``) its Gram cache."""
    opts = [f"--weights {style['weights']}", f"--precision {style['precision']}"]
    if style["iterations"] is not None:
        opts.append(f"--iterations {style['iterations']}")
    if cache_dir:
        opts.append(f"--style-cache {cache_dir}")
    return " ".join(opts)


def z_range_opts(z_range: tuple[int, int], volume_z: int | None = None) -> str:
    """``--z-range a:b`` (faket labels) and ``--volume-z NZ`` (faket reconstruct)."""
    a, b = z_range
    return f"--z-range {a}:{b}" + ("" if volume_z is None else f" --volume-z {volume_z}")


def pixel_size_opt(flag: str, pixel_size_a: float | None) -> str:
    """``flag A`` (a manifest entry's stated pixel size), ``""`` when it states none."""
    return f"{flag} {pixel_size_a:g}" if pixel_size_a else ""


def labels_input_opts(inputs) -> str:
    """faket labels' input options (``--class-mask``, ``--occupancy``, ``--particles``, ...) of a rule's input
    (keys: the layout file keys of :data:`faket.formats.names.LAYOUT_FILES` and ``CELLULAR_LAYOUT_FILES``)."""
    return " ".join(f"--{_LABELS_OPTION.get(k, k).replace('_', '-')} {inputs[k]}" for k in inputs.keys())


def qc_input_opts(inputs) -> str:
    """faket qc's input options of a rule's input (keys of :data:`QC_INPUTS` that are present)."""
    return " ".join(f"--{k.replace('_', '-')} {inputs[k]}" for k in QC_INPUTS if k in inputs.keys())
