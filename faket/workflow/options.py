"""Command-line options of the steps, built from the workflow config (one place for the main rules and the
picker benchmark's, so that a config key means the same option everywhere).

Each function takes the config section it reads (already validated and filled by the schema) and the values
drawn for one tomogram, and returns the options as one string (``""`` when there are none).
"""

from __future__ import annotations

__all__ = ["layout_opts", "project_opts", "physics_opts", "noise_opts", "style_opts", "z_range_opts",
           "pixel_size_opt", "labels_input_opts", "qc_input_opts"]

# faket labels' option of a layout file when it is not "--" + its key with dashes
_LABELS_OPTION = {"occupancy_mask": "occupancy"}

# faket qc's inputs, in the order of its options
QC_INPUTS = ("noiseless", "content", "noisy", "styled", "reference", "tomogram", "class_mask", "particles")


def layout_opts(layout: dict, spec: str | None = None) -> str:
    """``faket layout``'s ``--spec``, ``--shape``, ``--voxel-size`` from ``layout`` (``spec``: another spec)."""
    spec = layout["spec"] if spec is None else spec
    opts = []
    if spec:
        opts.append(f"--spec {spec}")
    if layout["shape_zyx"]:
        opts.append("--shape {}".format(",".join(str(v) for v in layout["shape_zyx"])))
    if layout["voxel_size_a"]:
        opts.append(f"--voxel-size {layout['voxel_size_a']:g}")
    return " ".join(opts)


def project_opts(project: dict) -> str:
    w = project["detector_width"]
    return "" if w is None else f"--detector-width {w}"


def physics_opts(defocus_um: float, dose: float | None) -> str:
    """``faket reference``'s optics: the (drawn) defocus and the dose (``None``: its default)."""
    opts = [f"--defocus-um {defocus_um:g}"]
    if dose is not None:
        opts.append(f"--dose {dose:g}")
    return " ".join(opts)


def noise_opts(noise: dict, snr: float | None) -> str:
    """``faket noise``'s fit options and the (drawn) SNR (``None``: fitted to the reference)."""
    opts = [f"--estimate {noise['estimate']}", f"--content-noise {noise['content_noise']:g}",
            f"--noise-spectrum {noise['spectrum']}", f"--signal-transfer {noise['signal_transfer']}",
            f"--match {noise['match']}"]
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
