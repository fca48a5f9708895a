"""``faket layout``: a labelled particle layout -> density volume, class/occupancy masks, particle lists.

Usage::

    faket layout -o OUTDIR [--spec layout.yaml] [--seed S] [--particles LIST] [--allow-fewer]
                 [--box Z,Y,X] [--voxel-size A] [--cache-dir DIR] [--quiet]

Without ``--spec`` a built-in default is used: a 128 x 256 x 256 box at 10 A, a 100-voxel specimen slab,
120 particles of every built-in class (:data:`faket.layout.templates.BUILTIN_NAMES`; ~1200 particles, ~15 % of
the slab), one 60 nm vesicle and five 10 nm gold fiducials.
With ``--particles LIST`` (CSV, RELION STAR or SHREC ``particle_locations.txt``) the particles of the
list are placed as given (ids, classes, positions and angles kept) instead of at random.

Spec (YAML; every key optional; unknown keys and wrong types are errors)::

    box: [128, 256, 256]      # Z, Y, X in voxels (--box overrides)
    voxel_size: 10.0          # Angstrom per voxel (--voxel-size overrides)
    slab_thickness: 100       # voxels: whole particles stay in a centred Z slab (default: the box Z size)
    mask_threshold: 0.1       # a particle's mask = its rotated template > this fraction of its maximum
    interpolation: linear     # linear | cubic (rotating templates)
    max_tries: 2000           # random positions tried per particle before it is given up
    tomo_name: faket          # rlnTomoName in particles.star
    classes:                  # particle classes, class_id = position in this list (1, 2, ...)
      - template: ring        # built-in name, MRC map (.mrc/.map) or atomic model (.pdb/.cif)
        name: ring            # label (default: the built-in name or the file name stem)
        count: 20             # how many (default 120), or
        fraction: 0.02        # volume fraction of the slab (mask volume; instead of count)
        map_voxel_size: 2.02  # maps only: voxel size when the header has none
        resolution: 20        # atomic models only: blur to this resolution (Angstrom)
        membrane: pm          # a membrane protein: placed on the membrane of this name (count only)
        axis: [0, 0, 1]       #   template direction (x, y, z) put along the membrane normal
        insertion_nm: 0       #   template centre this far from the mid-plane along the normal
        leaflet: outer        #   outer | inner | both: the side the axis points to (random spin)
    vesicles:                 # hollow spheres with a lipid-bilayer profile (one class; absent = none)
      count: 1                # default 1 when the section is given
      diameter_nm: 60         # outer diameter
      membrane_thickness_nm: 4
      contrast: 1.0           # head-group peak density (protein-density units: 1 = inside a protein)
      name: vesicle           # class label (SHREC 2021 uses "vesicle")
    fiducials:                # gold beads (dense balls, one class; absent = none)
      count: 5                # default 5 when the section is given
      diameter_nm: 10
      contrast: 10.0          # density of gold in protein-density units
      name: fiducial
    membranes:                # bilayers (two dense leaflets, lighter core), one class per entry
      - shape: sphere         # sphere | ellipsoid | plane | tube
        name: pm              # class label (default <shape>_membrane)
        count: 1              # default 1
        size_nm: 100          # outer diameter (sphere, tube; default 100, 40) or outer semi-axes
                              # [a, b, c] (ellipsoid; default [60, 45, 35], random orientation)
        thickness_nm: 4.5     # bilayer thickness (mask = |distance from mid-plane| <= thickness / 2)
        length_nm: 200        # tube only (absent: the tube crosses the box)
        axis: [1, 0, 0]       # tube only (default: random in the XY plane)
        normal: [0, 0, 1]     # plane only (default [0, 0, 1]; a plane crosses the box, cut by the slab)
        curvature: 0          # plane only: 1 / radius of curvature in 1/um (> 0 bends towards the normal)
        contrast: 1.0         # head-group peak density
    filaments:                # persistence-length random paths in the slab, one class per entry
      - type: microtubule     # microtubule (13 protofilaments, 8 nm dimers, ~25 nm) | actin (double
                              # helix, 2.75 nm rise, -166.7 deg twist, ~7 nm) | custom
        name: microtubule     # class label (default: the type)
        count: 1              # default 1
        length_nm: 200        # default 200
        persistence_length_nm: 5.0e+6  # default: microtubule 5 mm, actin 17 um, custom 1 um
        contrast: 1.0         # the filament's maximum density
        template: ring        # custom only: the monomer (built-in, map or model; map_voxel_size, resolution)
        rise_nm: 5.0          # custom only (required): axial rise per monomer
        twist_deg: 0          # custom only: rotation per monomer about the axis
        radius_nm: 0          # custom only: distance of the monomer centres from the axis

Class ids: the ``classes`` in order (1..K), then vesicles, then fiducials (when their count > 0), then
membranes, then filaments (one id per entry). Placement order: membranes, filaments (thickest first),
membrane proteins, then soluble particles (largest first); no two share a mask voxel (a membrane protein
displaces the lipid of its own membrane). Impossible requests: an error, or ``--allow-fewer``.

Outputs (in OUTDIR, all staged and renamed together at the end, so a failed run leaves nothing):
``volume.mrc`` (density), ``class_mask.mrc`` (0 background, 1..K), ``occupancy_mask.mrc`` (0 background,
else particle_id; membranes and filaments follow the particles), each with a JSON provenance sidecar;
``classes.json`` (class_id -> name, kind (particle, membrane_protein, vesicle, fiducial, membrane,
filament), source, diameter_nm); ``particles.csv`` (particle_id,class_id,class_name,x,y,z,rot,tilt,psi:
voxels of volume.mrc, RELION ZYZ degrees; membrane proteins included); ``particles.star`` (RELION 5:
rlnCenteredCoordinate*Angst from the centre N/2); ``particle_locations.txt`` (SHREC 2021: class x y z
and ZXZ angles). With membranes or filaments also: ``membrane_mask.mrc`` (1 on bilayer voxels),
``instances.csv`` (instance_id of the occupancy -> kind, class, item id), ``membranes.csv``,
``filaments.csv`` (one polyline per filament, a point every 4 nm) and ``filaments.star`` (RELION 5,
rlnHelicalTubeID), ``filament_subunits.csv`` / ``.star`` (filament_id, subunit, strand, x, y, z, angles).
See docs/cellular-layouts.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from faket.cli._common import Step, add_common_args, check_not_same, info, progress, warn
from faket.errors import InputError
from faket.formats.names import CELLULAR_LAYOUT_OUTPUTS, LAYOUT_OUTPUTS

HELP = "make a labelled particle layout (density volume, class/occupancy masks, particle lists)"
DESCRIPTION = __doc__

# The spec schema lives in faket.layout (validate_spec, default_spec, DEFAULT_*); it is re-exported here
# lazily so that building the CLI parser does not import numpy/pandas.
_FROM_LAYOUT = (
    "validate_spec",
    "default_spec",
    "DEFAULT_BOX",
    "DEFAULT_VOXEL_SIZE",
    "DEFAULT_SLAB",
    "DEFAULT_COUNT_PER_CLASS",
    "DEFAULT_VESICLES",
    "DEFAULT_FIDUCIALS",
)


def __getattr__(name):
    if name in _FROM_LAYOUT:
        # lazy: numpy, pandas (faket's start-up imports every command module)
        from faket import layout

        return getattr(layout, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# the files faket layout writes (names: faket.formats.names); tuples kept for scripts that used them
OUTPUT_FILES = tuple(LAYOUT_OUTPUTS.values())
#: written too when the spec has membranes or filaments (not faket.labels.CELLULAR_FILES: what labels copies)
CELLULAR_FILES = tuple(CELLULAR_LAYOUT_OUTPUTS.values())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--spec", metavar="YAML", help="layout spec (default: built-in crowded mixed layout)")
    p.add_argument(
        "--particles", metavar="LIST", help="place this list (.csv, .star, SHREC .txt) instead of a random layout"
    )
    p.add_argument(
        "--allow-fewer", action="store_true", help="keep a random layout even when not every requested particle fits"
    )
    p.add_argument(
        "--box",
        "--shape",
        dest="box",
        metavar="Z,Y,X",
        help="box size in voxels (overrides the spec; --shape is the same option)",
    )
    p.add_argument("--voxel-size", type=float, metavar="A", help="voxel size in Angstrom (overrides the spec)")
    p.add_argument("--cache-dir", metavar="DIR", help="template cache (default: $FAKET_CACHE or ~/.cache/faket)")
    p.add_argument(
        "--tomo-name",
        metavar="NAME",
        help="rlnTomoName of the STAR files (overrides the spec's tomo_name; the workflow passes each tomogram's name)",
    )
    add_common_args(p, seed=True, device=False, threads=False)


# --------------------------------------------------------------------------------------------------
# spec (the schema lives in faket.layout)


def _parse_box(text: str):
    parts = [s.strip() for s in text.replace("x", ",").split(",")]
    try:
        box = [int(s) for s in parts]
    except ValueError:
        raise InputError(f"--box {text!r}: expected Z,Y,X integers") from None
    if len(box) != 3 or min(box) < 1:
        raise InputError(f"--box {text!r}: expected three positive integers Z,Y,X")
    return box


# --------------------------------------------------------------------------------------------------
# run


def _write_cellular(st, lay, outdir, vs, box, tomo_name, params, extra) -> None:
    # lazy: numpy, pandas (faket's start-up imports every command module)
    from faket.layout.filaments import write_filaments_star

    f = {k: outdir / n for k, n in CELLULAR_LAYOUT_OUTPUTS.items()}
    st.write_mrc(
        f["membrane_mask"],
        lay.membrane_mask,
        vs,
        params=params,
        extra={**extra, "meaning": "1 on membrane bilayer voxels (|d| <= thickness/2), else 0"},
    )
    st.path(f["instances"]).write_text(lay.instances.to_csv(index=False))
    st.path(f["membranes"]).write_text(lay.membranes.to_csv(index=False))
    st.path(f["filaments"]).write_text(lay.filaments.to_csv(index=False))
    st.path(f["filament_subunits"]).write_text(lay.subunits.to_csv(index=False))
    write_filaments_star(lay.filaments, st.path(f["filaments_star"]), voxel_size_a=vs, box_zyx=box, tomo_name=tomo_name)
    write_filaments_star(
        lay.subunits, st.path(f["filament_subunits_star"]), voxel_size_a=vs, box_zyx=box, tomo_name=tomo_name
    )


def run(args) -> int:
    # lazy: numpy, pandas (faket's start-up imports every command module)
    from faket import layout as L
    from faket.formats.particles import (
        read_particles,
        write_particles_csv,
        write_particles_star,
        write_shrec_locations,
    )

    t0 = time.perf_counter()
    spec = L.load_spec(args.spec) if args.spec else L.default_spec()
    if args.box:
        spec["box"] = _parse_box(args.box)
        if not args.spec:  # the default's 100-voxel slab shrinks with a smaller --box
            spec["slab_thickness"] = min(spec["slab_thickness"], spec["box"][0])
    if args.voxel_size is not None:
        if not args.voxel_size > 0:
            raise InputError(f"--voxel-size {args.voxel_size}: must be positive")
        spec["voxel_size"] = float(args.voxel_size)
    if args.tomo_name is not None:
        if not args.tomo_name.strip() or any(c.isspace() for c in args.tomo_name):
            raise InputError(f"--tomo-name {args.tomo_name!r}: a tomogram name without spaces is needed")
        spec["tomo_name"] = args.tomo_name
    box, vs = tuple(spec["box"]), float(spec["voxel_size"])
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir}: exists and is not a folder")
    targets = {k: outdir / n for k, n in {**LAYOUT_OUTPUTS, **CELLULAR_LAYOUT_OUTPUTS}.items()}
    check_not_same([args.spec, args.particles], targets.values())
    df = read_particles(args.particles, voxel_size_a=vs, box_zyx=box) if args.particles else None

    with progress(desc="placing", unit="particle", args=args) as bar:

        def total(n):
            bar.total = n
            bar.refresh()

        try:
            res = L.make_layout(
                spec,
                seed=args.seed,
                particles=df,
                allow_fewer=args.allow_fewer,
                cache_dir=args.cache_dir,
                source=str(args.spec),
                particles_source=str(args.particles),
                progress=bar.update,
                progress_total=total,
            )
        except L.NotEnoughRoom as exc:
            raise InputError(str(exc)) from None
    for w in res.warnings:
        warn(w)
    for n in res.notes:
        info(args, n)

    lay = res.layout
    params = {"spec_resolved": dict(spec), "box_zyx": list(box), "voxel_size_a": vs}
    extra = {"layout": res.summary}
    with Step("layout", args, inputs=[args.spec, args.particles]) as st:
        st.write_mrc(targets["volume"], lay.density, vs, params=params, extra=extra)
        st.write_mrc(
            targets["class_mask"],
            lay.class_mask,
            vs,
            params=params,
            extra={**extra, "meaning": "0 background, else class_id (classes.json)"},
        )
        st.write_mrc(
            targets["occupancy_mask"],
            lay.occupancy,
            vs,
            params=params,
            extra={
                **extra,
                "meaning": "0 background, else particle_id (particles.csv)"
                + (
                    "; membranes and filaments after the particles (instances.csv)" if lay.instances is not None else ""
                ),
            },
        )
        st.path(targets["classes"]).write_text(json.dumps(res.classes, indent=2) + "\n")
        write_particles_csv(lay.particles, st.path(targets["particles"]))
        write_particles_star(
            lay.particles, st.path(targets["particles_star"]), voxel_size_a=vs, box_zyx=box, tomo_name=spec["tomo_name"]
        )
        write_shrec_locations(lay.particles, st.path(targets["particle_locations"]))
        if lay.instances is not None:  # cellular layouts: membranes, filaments
            _write_cellular(st, lay, outdir, vs, box, spec["tomo_name"], params, extra)
    for cid, c in res.classes.items():  # after success: an error stays one line
        size = f", ~{c['diameter_nm']:.1f} nm" if c.get("diameter_nm") else ""
        info(args, f"class {cid} {c['name']} ({c.get('kind', 'particle')}): {c['source']}{size}")
    frac = res.summary["occupied_fraction"]
    if lay.instances is not None:
        info(
            args,
            f"{len(lay.membranes)} membrane(s), {lay.filaments['filament_id'].nunique()} filament(s) "
            f"({len(lay.subunits)} subunits)",
        )
    info(
        args,
        f"{len(lay.particles)} particles ({', '.join(f'{k} {v}' for k, v in lay.placed.items())}) in a "
        f"{box[0]}x{box[1]}x{box[2]} box at {vs:g} A, {100 * frac:.1f}% of the "
        f"{'slab' if res.slab_z else 'box'} occupied, {time.perf_counter() - t0:.1f} s -> {outdir}",
    )
    return 0
