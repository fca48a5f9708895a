"""Command-line options of the workflow's steps from config sections, defined once: the main workflow's rules
(``workflow/rules/common.smk``) and the picker benchmark's plan (:class:`faket.picker.benchmark.Plan`) both
build their ``faket layout / reference / noise / style`` options here. Pure functions: config dicts in,
option strings out (values already drawn per tomogram with :func:`faket.workflow.draw`).
"""

from __future__ import annotations

from faket.errors import InputError

__all__ = ["PHYSICS_FLAGS", "layout_opts", "noise_opts", "physics_opts", "style_opts"]


# faket reference options a config may set (key -> flag); null values are left to faket reference's defaults
PHYSICS_FLAGS = {"defocus_um": "--defocus-um", "dose": "--dose", "mtf": "--mtf",
                 "ice_thickness_nm": "--ice-thickness-nm", "ice_phase_std": "--ice-phase-std",
                 "amplitude_contrast": "--amplitude-contrast", "defocus_gradient": "--defocus-gradient",
                 "voltage_kv": "--voltage-kv", "illumination_mrad": "--illumination-mrad"}


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


def physics_opts(settings: dict) -> str:
    """``faket reference`` options from physics settings (keys of :data:`PHYSICS_FLAGS`; None = its default).
    Values are fixed here: draw ranges (:func:`draw`) first."""
    unknown = sorted(set(settings) - set(PHYSICS_FLAGS))
    if unknown:
        raise InputError(f"{unknown[0]!r} is not a physics setting (known: {', '.join(PHYSICS_FLAGS)})")
    return " ".join(_opt(PHYSICS_FLAGS[k], float(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                    for k, v in settings.items() if v is not None)


def noise_opts(noise: dict, snr=None) -> str:
    """``faket noise`` options from the ``noise`` config section (``snr``: the drawn value, None = fitted)."""
    opts = [f"--estimate {noise['estimate']}", f"--content-noise {noise['content_noise']:g}"]
    if snr is not None:
        opts.append(f"--snr {snr:g}")
    return " ".join(opts)


def style_opts(style: dict, cache_dir: str | None = None) -> str:
    """``faket style`` options from the ``style`` config section (``cache_dir``: the Gram-target cache)."""
    opts = [f"--weights {style['weights']}", f"--precision {style['precision']}"]
    if style.get("iterations") is not None:
        opts.append(f"--iterations {style['iterations']}")
    if cache_dir:
        opts.append(f"--style-cache {cache_dir}")
    return " ".join(opts)
