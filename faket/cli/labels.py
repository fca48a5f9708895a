"""``faket labels``: masks and particle lists for a reconstructed tomogram (cropped and binned like it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from faket.cli._common import Step, add_common_args, check_not_same, voxel_size_or_assume, warn
from faket.errors import InputError
from faket.formats.names import (
    CELLULAR_LABEL_FILES,
    CELLULAR_LAYOUT_FILES,
    FULL_LIST_FILES,
    LAYOUT_FILES,
    cellular_label_files,
    label_files,
)

HELP = "crop and bin class/occupancy masks like the tomogram; particle lists in its voxel coordinates"
DESCRIPTION = """\
faket labels LAYOUTDIR -o OUTDIR --bin 2 [--z-range a:b]
faket labels --class-mask C.mrc --occupancy O.mrc --particles particle_locations.txt -o OUTDIR --bin 2,4

For each bin factor B (a comma list or repeated --bin), writes into OUTDIR
  class_mask_bin<B>.mrc, occupancy_mask_bin<B>.mrc      (+ .json provenance)
  particles_bin<B>.csv, particles_bin<B>.star, particle_locations_bin<B>.txt, particles_bin<B>.xml
  (DeepFinder object list) (+ particles_bin<B>.json)
in the voxel grid of `faket reconstruct --bin B --z-range a:b --volume-z NZ0`, and (unless --no-full-lists)
particles.csv, particles.star, particle_locations.txt, particles.xml: the whole list in the layout
volume's voxels.

Geometry: the masks are cropped to original Z indices [a, b) (default: all), then binned by B in Z, Y, X
with blocks from index 0; trailing samples that fill no block are dropped. A particle centre maps as
x_b = (x - (B-1)/2)/B, y_b likewise, z_b = (z - a - (B-1)/2)/B. The binned masks' MRC header origin
(Angstrom) is where their first voxel sits in the full volume, ((B-1)/2, (B-1)/2, a + (B-1)/2) x voxel size,
as faket reconstruct writes on the tomogram: position = origin + index x binned voxel size. Particle lists
in SHREC text hold integer centres (rounded, as SHREC's script reads them); CSV / STAR keep exact ones.

Mask binning: each block takes the label most of its voxels carry (background included; ties go to a
particle, then to the smaller id); a particle that wins no block (smaller than a block, or a minority in
every block it touches) takes the block where it has most voxels, so every particle with a voxel in the
tomogram stays in the occupancy mask. Then each listed particle owns the block holding its binned centre
(rounded like faket evaluate rounds picks), unless that is another particle's only block or centre. Class =
the particle's class on its voxels, so both masks agree.

Particle lists: particles whose binned centre lies outside the tomogram ([-0.5, n-0.5) on each axis)
are dropped (listed in the .json). Particles are renumbered 1..N in their original id order, and the
occupancy mask with them, so the SHREC line number = the occupancy id; particles whose centre is outside
but whose voxels reach into the tomogram keep voxels with ids N+1.. (unlisted). The id map is in the .json.

Cellular layouts (faket layout with membranes or filaments; docs/cellular-layouts.md): when LAYOUTDIR holds
them (or the options name them), also
  membrane_mask_bin<B>.mrc      any bilayer voxel in the block -> 1 (max-pooling: a thin bilayer stays
                                continuous and a closed membrane closed)
  instances_bin<B>.csv          instances.csv renumbered like the occupancy mask (membranes and filaments
                                are its ids after the particles; layout_instance_id = the layout's id)
  membranes_bin<B>.csv          membranes with voxels in the tomogram, centres moved like particle centres
  filaments_bin<B>.csv/.star, filament_subunits_bin<B>.csv/.star
                                points moved like particle centres, points outside the tomogram dropped
                                (filament ids and point/subunit indices kept); STAR at voxel size x B
  classes.json                  a copy of the layout's class table (class_id -> name, kind)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "layout",
        nargs="?",
        metavar="LAYOUTDIR",
        help="folder of faket layout (class_mask.mrc, occupancy_mask.mrc, particles.csv)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument(
        "--bin", action="append", required=True, metavar="B", help="bin factor(s): 2, or 2,4, or repeat the option"
    )
    p.add_argument("--z-range", metavar="a:b", help="original volume Z indices [a, b) kept (default: all)")
    p.add_argument("--class-mask", metavar="MRC", help="class mask (default: LAYOUTDIR/class_mask.mrc)")
    p.add_argument("--occupancy", metavar="MRC", help="occupancy mask (default: LAYOUTDIR/occupancy_mask.mrc)")
    p.add_argument(
        "--particles",
        metavar="LIST",
        help="particle list: CSV, STAR or SHREC particle_locations.txt (default: LAYOUTDIR/particles.csv)",
    )
    p.add_argument("--classes", metavar="JSON", help="class table to copy (default: LAYOUTDIR/classes.json if any)")
    p.add_argument(
        "--membrane-mask", metavar="MRC", help="0/1 membrane mask (default: LAYOUTDIR/membrane_mask.mrc if any)"
    )
    p.add_argument("--instances", metavar="CSV", help="instance table (default: LAYOUTDIR/instances.csv if any)")
    p.add_argument("--membranes", metavar="CSV", help="membrane table (default: LAYOUTDIR/membranes.csv if any)")
    p.add_argument("--filaments", metavar="CSV", help="filament polylines (default: LAYOUTDIR/filaments.csv if any)")
    p.add_argument(
        "--filament-subunits", metavar="CSV", help="filament subunits (default: LAYOUTDIR/filament_subunits.csv if any)"
    )
    p.add_argument("--voxel-size", type=float, metavar="A", help="voxel size in Angstrom when the mask header has none")
    p.add_argument("--tomo-name", help="rlnTomoName in the STAR files (default: OUTDIR's name)")
    p.add_argument(
        "--no-full-lists",
        action="store_true",
        help="do not write particles.csv/.star/particle_locations.txt (layout coordinates)",
    )
    add_common_args(p, seed=False, threads=False)


def _bins(specs) -> list[int]:
    out = []
    for s in specs:
        for part in str(s).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                b = int(part)
            except ValueError:
                raise InputError(f"--bin {s}: not an integer") from None
            if b < 1:
                raise InputError(f"--bin {b}: must be at least 1")
            if b not in out:
                out.append(b)
    if not out:
        raise InputError("--bin: give at least one bin factor")
    return out


def _as_labels(m, what):
    """The mask as int32 labels, converted in chunks of Z planes (no float temporaries of the whole volume:
    4 GB each at 1024^3); the float data of ``m`` is dropped afterwards (only the labels are used)."""
    # lazy: numpy (faket's start-up imports every command module)
    import numpy as np

    d = m.data
    out = np.empty(d.shape, np.int32)
    step = max(1, (1 << 24) // max(1, d[0].size))
    for z0 in range(0, d.shape[0], step):
        s = d[z0 : z0 + step]
        r = np.rint(s)
        if np.any(r != s) or r.min() < 0:
            raise InputError(f"{m.path}: {what} must hold non-negative integer labels")
        out[z0 : z0 + step] = r
    m.data = None
    return out


def _class_ids_from_mask(df, cls, occ, source):
    """SHREC lists carry class names only (ids follow first appearance): take the class mask's ids when
    they map one to one to the names."""
    # lazy: numpy (faket's start-up imports every command module)
    from faket.labels import class_ids_from_mask, one_to_one

    new = class_ids_from_mask(df["particle_id"], cls, occ)
    if new is None:
        return df
    if not one_to_one(df["class_name"], new):
        warn(f"{source}: class names and the class mask's ids do not map one to one; keeping the list's ids")
        return df
    return df.assign(class_id=new)


# columns faket labels needs in each cellular table
_TABLE_COLUMNS = {
    "instances": ("instance_id", "kind", "item_id"),
    "membranes": ("instance_id", "x", "y", "z", "n_voxels"),
    "filaments": ("filament_id", "instance_id", "x", "y", "z"),
    "filament_subunits": ("filament_id", "instance_id", "x", "y", "z"),
}


def _read_table(path, key):
    # lazy: pandas (faket's start-up imports every command module)
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot read as CSV ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    missing = [c for c in _TABLE_COLUMNS[key] if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


def run(args) -> int:
    # lazy: numpy, pandas (faket's start-up imports every command module)
    import numpy as np

    from faket.formats.mrc import parse_range, read_volume
    from faket.formats.particles import (
        read_particles,
        write_deepfinder_xml,
        write_particles_csv,
        write_particles_star,
        write_shrec_locations,
    )
    from faket.labels import (
        bin_binary_mask,
        bin_instances,
        bin_labels,
        bin_membranes,
        bin_points,
        binned_origin,
        binned_shape,
        crop_z,
    )
    from faket.layout.filaments import write_filaments_star

    lay = Path(args.layout) if args.layout else None
    if lay is not None and not lay.is_dir():
        raise InputError(f"{lay}: layout folder not found")

    def pick(opt, name, option):
        if opt:
            return Path(opt)
        if lay is None:
            raise InputError(f"give LAYOUTDIR or --{option}")
        return lay / LAYOUT_FILES[name]

    def optional(opt, name):  # cellular layout files: given, or in LAYOUTDIR, or absent
        if opt:
            if not Path(opt).is_file():
                raise InputError(f"{opt}: file not found")
            return Path(opt)
        if lay is not None and (lay / CELLULAR_LAYOUT_FILES[name]).is_file():
            return lay / CELLULAR_LAYOUT_FILES[name]
        return None

    cell = {k: optional(getattr(args, k), k) for k in CELLULAR_LAYOUT_FILES}
    cell = {k: v for k, v in cell.items() if v is not None}
    cm_path = pick(args.class_mask, "class_mask", "class-mask")
    om_path = pick(args.occupancy, "occupancy_mask", "occupancy")
    pl_path = pick(args.particles, "particles", "particles")
    bins = _bins(args.bin)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    tomo_name = args.tomo_name or out.resolve().name

    cm = read_volume(cm_path, what="class mask")
    cls = _as_labels(cm, "class mask")  # each mask to int32 as soon as it is read (memory at 1024^3)
    om = read_volume(om_path, what="occupancy mask")
    occ = _as_labels(om, "occupancy mask")
    if cls.shape != occ.shape:
        raise InputError(f"{om_path}: shape {occ.shape} differs from the class mask's {cls.shape}")
    voxel = voxel_size_or_assume(args, cm, what="class mask")
    shape = cls.shape
    df = read_particles(pl_path, voxel_size_a=voxel, box_zyx=shape)
    if pl_path.suffix.lower() == ".txt" and len(df):
        df = _class_ids_from_mask(df, cls, occ, pl_path)
    step = max(1, (1 << 24) // max(1, occ[0].size))  # np.unique of the whole mask sorts a copy of it
    ids_in_mask = set().union(*(np.unique(occ[z : z + step]).tolist() for z in range(0, occ.shape[0], step))) - {0}
    not_in_mask = sorted(set(df["particle_id"].tolist()) - ids_in_mask)
    if not_in_mask:
        warn(f"{pl_path}: {len(not_in_mask)} particle(s) have no voxel in {om_path} (e.g. id {not_in_mask[0]})")
    za, zb = parse_range(args.z_range) if args.z_range else (0, shape[0])
    cropped_shape = crop_z(cls, (za, zb)).shape
    mm = None
    if "membrane_mask" in cell:
        mrc = read_volume(cell["membrane_mask"], what="membrane mask")
        if mrc.data.shape != shape:
            raise InputError(f"{cell['membrane_mask']}: shape {mrc.data.shape} differs from the class mask's {shape}")
        mm = _as_labels(mrc, "membrane mask")
    tables = {k: _read_table(cell[k], k) for k in _TABLE_COLUMNS if k in cell}
    if "classes" in cell:
        import json

        try:
            classes_text = cell["classes"].read_text()
            json.loads(classes_text)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{cell['classes']}: not a readable JSON class table ({exc})") from None

    # cellular outputs present only for the cellular inputs given
    made = {
        "membrane_mask": "membrane_mask",
        "instances": "instances",
        "membranes": "membranes",
        "filaments": "filaments",
        "filaments_star": "filaments",
        "filament_subunits": "filament_subunits",
        "filament_subunits_star": "filament_subunits",
    }
    names = {b: {k: out / n for k, n in label_files(b).items()} for b in bins}
    for b in bins:
        names[b].update({k: out / n for k, n in cellular_label_files(b).items() if made[k] in cell})
    full = {k: out / n for k, n in FULL_LIST_FILES.items()}
    targets = []
    for b in bins:
        binned_shape(cropped_shape, b)  # validates the bin factor early
        targets += list(names[b].values())
    if not args.no_full_lists:
        targets += list(full.values())
    if "classes" in cell:
        targets.append(out / CELLULAR_LABEL_FILES["classes"])
    check_not_same([cm_path, om_path, pl_path, *cell.values()], targets)

    pts = df[["z", "y", "x"]].to_numpy(dtype=np.float64)
    with Step("labels", args, inputs=[cm_path, om_path, pl_path, *cell.values()]) as st:
        if "classes" in cell:
            st.path(out / CELLULAR_LABEL_FILES["classes"]).write_text(classes_text)
        for b in bins:
            f = names[b]
            r = bin_labels(cls, occ, pts, df["particle_id"].to_numpy(), b, z_range=(za, zb), ids_in_mask=ids_in_mask)
            kept = df.iloc[r.rows].copy()
            kept["particle_id"] = r.particle_ids
            kept["z"], kept["y"], kept["x"] = r.coordinates_zyx.T
            vb = voxel * b
            origin = binned_origin(b, za, voxel)  # MRC header origin: the grid's place in the full volume
            common = {
                "bin": b,
                "z_range": [za, zb],
                "volume_shape_zyx": list(shape),
                "tomogram_shape_zyx": list(r.occupancy_mask.shape),
                "voxel_size_a": vb,
                "rule": "vote per block (background included), every particle kept, centres owned",
                "origin_a_xyz": list(origin),
            }
            id_map = {str(o): n for o, n in r.id_map.items()}
            st.write_mrc(f["class_mask"], r.class_mask.astype(np.float32), vb, extra=common, origin_a=origin)
            st.write_mrc(
                f["occupancy_mask"],
                r.occupancy_mask.astype(np.float32),
                vb,
                origin_a=origin,
                extra={
                    **common,
                    "particle_id_map": id_map,
                    "rescued_particle_ids": sorted(r.info.rescued),
                    "lost_particle_ids": r.info.lost,
                    "centre_conflict_particle_ids": r.info.centre_conflicts,
                },
            )
            write_particles_csv(kept, st.path(f["particles_csv"]))
            write_particles_star(
                kept,
                st.path(f["particles_star"]),
                voxel_size_a=vb,
                box_zyx=r.occupancy_mask.shape,
                tomo_name=tomo_name,
                bin_factor=b,
                unbinned_box_zyx=cropped_shape,
            )
            write_shrec_locations(kept, st.path(f["particle_locations"]))
            write_deepfinder_xml(kept, st.path(f["particles_xml"]))
            st.write_sidecar(
                f["particles_csv"].with_suffix(".json"),
                extra={
                    **common,
                    "n_particles": len(kept),
                    "dropped_particle_ids": r.dropped_ids,
                    "unlisted_particle_ids_in_mask": r.unlisted_ids,
                    "particle_id_map": id_map,
                },
            )
            shape_b = r.occupancy_mask.shape
            if mm is not None:
                st.write_mrc(
                    f["membrane_mask"],
                    bin_binary_mask(mm, b, (za, zb)),
                    vb,
                    origin_a=origin,
                    extra={**common, "rule": "max-pooling: 1 where any voxel of the block is membrane"},
                )
            if "instances" in tables:
                listed = {int(o): int(n) for o, n in zip(df["particle_id"].to_numpy()[r.rows], r.particle_ids)}
                inst = bin_instances(tables["instances"], r.id_map, listed)
                st.path(f["instances"]).write_text(inst.to_csv(index=False))
            if "membranes" in tables:
                mem = bin_membranes(tables["membranes"], r.id_map, r.occupancy_mask, b, za)
                st.path(f["membranes"]).write_text(mem.to_csv(index=False))
            for k in ("filaments", "filament_subunits"):
                if k in tables:
                    t = bin_points(tables[k], r.id_map, b, shape_b, za)
                    st.path(f[k]).write_text(t.to_csv(index=False))
                    write_filaments_star(
                        t,
                        st.path(f[f"{k}_star"]),
                        voxel_size_a=vb,
                        box_zyx=shape_b,
                        tomo_name=tomo_name,
                        bin_factor=b,
                        unbinned_box_zyx=cropped_shape,
                    )
        if not args.no_full_lists:
            lst = df.sort_values("particle_id")
            write_particles_csv(lst, st.path(full["particles_csv"]))
            write_particles_star(
                lst, st.path(full["particles_star"]), voxel_size_a=voxel, box_zyx=shape, tomo_name=tomo_name
            )
            write_shrec_locations(lst, st.path(full["particle_locations"]))
            write_deepfinder_xml(lst, st.path(full["particles_xml"]))
            st.write_sidecar(
                full["particles_csv"].with_suffix(".json"),
                extra={
                    "coordinates": "voxels of the layout volume (unbinned, uncropped)",
                    "volume_shape_zyx": list(shape),
                    "voxel_size_a": voxel,
                    "n_particles": len(lst),
                },
            )
    return 0
