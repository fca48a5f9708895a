"""Cellular layouts: membranes, filaments and membrane proteins placed with the soluble particles.

The placement behind :func:`faket.layout.make_layout` when a spec has ``membranes`` or ``filaments``
(geometry: :mod:`faket.layout.membranes`, :mod:`faket.layout.filaments`; spec keys: ``faket layout --help``).

Order: membranes, then filaments (thickest first), then membrane proteins, then soluble particles
(largest first, :func:`faket.layout.random_layout` on the same canvas with ``default_rng(seed)``; the
structures draw from ``default_rng([seed, 15])``). No two structures share a mask voxel, except that a
membrane protein takes over voxels of its own membrane (it displaces the lipid). While placing,
membranes and filaments carry temporary ids -1, -2, ...; at the end they become ``N + 1 ...`` after the N
particles, so the occupancy mask holds one id per particle, membrane and filament (``instances``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from faket.formats.table import COLUMNS, check_particles
from faket.layout.canvas import (
    Layout,
    LayoutClass,
    NotEnoughRoom,
    _Canvas,
    _instance,
    _prepare,
    _template_entry,
    random_layout,
)
from faket.rotation import rotation_to_relion

__all__ = ["cellular_layout", "MEMBRANE_COLUMNS", "FILAMENT_COLUMNS", "SUBUNIT_COLUMNS", "INSTANCE_COLUMNS"]


def _rotation_relion(mat: np.ndarray) -> np.ndarray:
    # lazy: scipy
    from scipy.spatial.transform import Rotation

    return rotation_to_relion(Rotation.from_matrix(mat))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    # lazy: scipy
    from scipy.spatial.transform import Rotation

    return Rotation.from_quat(q).as_matrix()


def _spin(axis, angle) -> np.ndarray:
    # lazy: scipy
    from scipy.spatial.transform import Rotation

    a = np.asarray(axis, float)
    return Rotation.from_rotvec(a / np.linalg.norm(a) * angle).as_matrix()


def _draw_membrane(entry: dict, rng: np.random.Generator, box, slab, vs_nm: float):
    """A random membrane of a spec entry, or None when it cannot fit the box / slab at all."""
    # lazy: pandas
    from faket.layout.membranes import Membrane, align_rotation

    nz, ny, nx = box
    z0, z1 = slab
    t = entry["thickness_nm"] / vs_nm
    shape = entry["shape"]
    lo = np.array([0.0, 0.0, z0])
    hi = np.array([nx - 1.0, ny - 1.0, z1 - 1.0])
    if shape == "plane":
        n = np.asarray(entry["normal"], float)
        rot = align_rotation([0, 0, 1], n) @ _spin([0, 0, 1], rng.uniform(0, 2 * np.pi))
        half = t / 2 + 1
        if z1 - z0 < 2 * half:
            return None
        c = np.array([rng.uniform(0, nx - 1), rng.uniform(0, ny - 1), rng.uniform(z0 + half, z1 - 1 - half)])
        k = entry.get("curvature", 0.0)  # 1 / um; > 0 bends towards the normal
        rc = 1000.0 / k / vs_nm if k else np.inf
        return Membrane("plane", c, rot, np.zeros(3), t, curvature_radius=rc)
    if shape == "tube":
        r_out = entry["size_nm"] / 2 / vs_nm
        a = (
            np.asarray(entry["axis"], float)
            if "axis" in entry
            else np.array([np.cos(p := rng.uniform(0, np.pi)), np.sin(p), 0.0])
        )
        a /= np.linalg.norm(a)
        rot = align_rotation([0, 0, 1], a) @ _spin([0, 0, 1], rng.uniform(0, 2 * np.pi))
        half_len = entry["length_nm"] / 2 / vs_nm if "length_nm" in entry else np.inf
        radii = np.array([r_out - t / 2, r_out - t / 2, half_len])
        if np.isfinite(half_len):  # a finite tube lies wholly inside the slab
            ext = np.abs(a) * half_len + (r_out + 1) * np.sqrt(np.clip(1 - a**2, 0, 1))
        else:  # an endless one is cut by the box, not by the slab's Z faces
            ext = (r_out + 1) * np.sqrt(np.clip(1 - a**2, 0, 1))
            ext[:2] = 0
        if np.any(hi - ext < lo + ext):
            return None
        return Membrane("tube", lo + ext + rng.random(3) * (hi - lo - 2 * ext), rot, radii, t)
    if shape == "sphere":
        r_out = entry["size_nm"] / 2 / vs_nm
        rot = np.eye(3)
        radii = np.full(3, r_out - t / 2)
        ext = np.full(3, r_out + 1)
    else:
        r_out = np.asarray(entry["size_nm"], float) / vs_nm
        rot = _random_rotation(rng)
        radii = r_out - t / 2
        ext = np.sqrt(((rot * (r_out + 1)[None, :]) ** 2).sum(1))  # bounding box of a rotated ellipsoid
    if np.any(hi - ext < lo + ext):
        return None
    return Membrane(shape, lo + ext + rng.random(3) * (hi - lo - 2 * ext), rot, radii, t)


def _probe_taken(canvas: _Canvas, m, rng, slab, n: int = 96) -> bool:
    """Cheap test before rendering: is any of ``n`` random points across the bilayer already taken?"""
    shape = np.asarray(canvas.shape)
    for _ in range(n):
        hit = m.sample_surface(rng, canvas.shape, slab, max_tries=20)
        if hit is None:
            continue
        p, nrm = hit
        for k in (-0.5, 0.0, 0.5):
            v = np.floor((p + k * m.thickness * nrm)[::-1] + 0.5).astype(np.int64)
            if np.all(v >= 0) and np.all(v < shape) and canvas.occupancy[tuple(v)] != 0:
                return True
    return False


def _place_membranes(canvas: _Canvas, entries, class_ids, rng, vs_nm, slab, membrane_mask, *, tries: int = 200):
    """Membranes first (largest structures): no two share a mask voxel. Temporary ids -1, -2, ..."""
    # lazy: pandas
    from faket.layout.membranes import render_membrane

    placed = []
    for entry, cid in zip(entries, class_ids):
        for _ in range(entry["count"]):
            for _attempt in range(tries):
                m = _draw_membrane(entry, rng, canvas.shape, slab, vs_nm)
                if m is None:
                    break
                if _probe_taken(canvas, m, rng, slab):
                    continue
                flat, dens, mask = render_membrane(m, canvas.shape, slab, contrast=entry["contrast"])
                mflat = flat[mask]
                if len(mflat) == 0 or canvas.occ_flat[mflat].any():
                    continue
                tmp = -(len(placed) + 1)
                canvas.occ_flat[mflat] = tmp
                canvas.cls_flat[mflat] = cid
                canvas.density.reshape(-1)[flat] += dens
                membrane_mask.reshape(-1)[mflat] = 1
                placed.append(dict(membrane=m, entry=entry, class_id=cid, tmp_id=tmp, n_voxels=int(len(mflat))))
                break
    return placed


def _filament_templates(entry: dict, vs: float, cache_dir, mask_threshold: float):
    if entry["type"] != "custom":
        return None
    t = _template_entry(
        {k: entry[k] for k in ("template", "map_voxel_size", "resolution") if k in entry}, vs, cache_dir
    )
    cls = LayoutClass(class_id=1, name=entry["name"], template=t["density"])
    return _prepare(cls, mask_threshold), float(t["diameter_nm"])


def _render_filament(kind, pts, vs_nm, entry, custom, canvas_shape, mask_threshold, order, scale=None):
    """Subunits + sparse density/mask of one filament along ``pts``."""
    # lazy: pandas
    from faket.layout.filaments import render_blobs, subunits

    kw = {}
    if entry["type"] == "custom":
        kw = dict(rise_nm=entry["rise_nm"], twist_deg=entry["twist_deg"], radius_nm=entry["radius_nm"])
    su = subunits(kind, pts, vs_nm, **kw)
    angles = _rotation_relion(su["rot"]).reshape(-1, 3)
    if custom is None:
        flat, vals = render_blobs(su["blobs"], su["blob_weight"], kind.sigma_nm / vs_nm, canvas_shape)
        if scale is None:
            scale = entry["contrast"] / float(vals.max())
        vals = vals * np.float32(scale)
        mask = vals > mask_threshold * entry["contrast"]
        return su, angles, flat, vals, flat[mask], scale
    prep = custom[0]
    nz, ny, nx = canvas_shape
    strides = np.array([ny * nx, nx, 1])
    flats, vals_l, masks = [], [], []
    for pos, ang in zip(su["pos"], angles):
        czyx = pos[::-1]
        c = np.floor(czyx + 0.5).astype(np.int64)
        inst = _instance(prep, ang, order, shift_zyx=czyx - c)
        g = np.stack(np.meshgrid(*[np.arange(s) for s in inst.dens.shape], indexing="ij"), -1).reshape(-1, 3)
        vox = c + inst.dens_lo + g
        ok = np.all((vox >= 0) & (vox < np.asarray(canvas_shape)), axis=1)
        flats.append(vox[ok] @ strides)
        vals_l.append(inst.dens.reshape(-1)[ok])
        mv = c + inst.mask_off
        mok = np.all((mv >= 0) & (mv < np.asarray(canvas_shape)), axis=1)
        masks.append(mv[mok] @ strides)
    flat = np.concatenate(flats)
    uniq, inv = np.unique(flat, return_inverse=True)
    vals = (np.bincount(inv, weights=np.concatenate(vals_l)) * entry["contrast"]).astype(np.float32)
    return su, angles, uniq, vals, np.unique(np.concatenate(masks)), 1.0


def _tube_taken(canvas: _Canvas, pts: np.ndarray, radius: float) -> bool:
    """Cheap test before rendering: is the axis, or a ring of 8 points at ``radius`` around it, taken?"""
    # lazy: pandas
    from faket.layout.filaments import path_frames

    sub = pts[::2] if len(pts) > 4 else pts
    _, _, N, B = path_frames(sub)
    ang = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    ring = (np.cos(ang)[None, :, None] * N[:, None, :] + np.sin(ang)[None, :, None] * B[:, None, :]) * radius
    probe = np.concatenate([sub, (sub[:, None, :] + ring).reshape(-1, 3)])
    v = np.floor(probe[:, ::-1] + 0.5).astype(np.int64)
    v = v[np.all((v >= 0) & (v < np.asarray(canvas.shape)), axis=1)]
    return bool(canvas.occ_flat[v @ canvas.strides].any())


def _place_filaments(
    canvas: _Canvas,
    entries,
    class_ids,
    rng,
    vs: float,
    slab,
    *,
    mask_threshold,
    order,
    cache_dir,
    first_tmp: int,
    tries: int = 150,
):
    # lazy: pandas
    from faket.layout.filaments import FILAMENT_TYPES, random_path

    vs_nm = vs / 10.0
    nz, ny, nx = canvas.shape
    z0, z1 = slab
    placed = []
    # thickest first (as particles: largest first), then in spec order
    todo = sorted(zip(entries, class_ids), key=lambda ec: (-FILAMENT_TYPES[ec[0]["type"]].outer_radius_nm(), ec[1]))
    for entry, cid in todo:
        if entry["count"] == 0:
            continue
        kind = FILAMENT_TYPES[entry["type"]]
        custom = _filament_templates(entry, vs, cache_dir, mask_threshold)
        outer = kind.outer_radius_nm(custom[1] / 2 if custom else 0.0) / vs_nm
        margin = outer + 1.0
        length = entry["length_nm"] / vs_nm
        lp = entry["persistence_length_nm"] / vs_nm
        step = max(1.0, 1.0 / vs_nm)  # ~1 nm, at least one voxel
        room_z = (z1 - z0 - 1) - 2 * margin
        if room_z < 0:
            continue
        # reference scale (blobs): the maximum of a straight piece -> contrast
        scale = None
        if custom is None:
            m_ref = int(np.ceil(outer)) + 6
            n_ref = int(np.ceil(60.0 / vs_nm))  # a straight 60 nm piece
            ref = np.stack([m_ref + np.arange(n_ref, dtype=float), np.full(n_ref, m_ref), np.full(n_ref, m_ref)], 1)
            scale = _render_filament(
                kind, ref, vs_nm, entry, None, (2 * m_ref + 1, 2 * m_ref + 1, n_ref + 2 * m_ref), mask_threshold, order
            )[5]
        for _ in range(entry["count"]):
            for _attempt in range(tries):
                tz_max = min(1.0, room_z / length)
                phi = rng.uniform(0, 2 * np.pi)
                tz = rng.uniform(-tz_max, tz_max) * 0.9
                d = np.array([np.cos(phi) * np.sqrt(1 - tz * tz), np.sin(phi) * np.sqrt(1 - tz * tz), tz])
                lo = np.array([0.0, 0.0, z0])
                hi = np.array([nx, ny, z1], float)
                span = np.maximum(hi - 1 - lo - 2 * margin, 0)
                for _s in range(200):  # a start whose straight chord stays inside
                    start = lo + margin + rng.random(3) * span
                    end = start + length * d
                    if np.all(end >= lo + margin) and np.all(end <= hi - 1 - margin):
                        break
                else:
                    continue
                pts = random_path(rng, length, lp, lo, hi, step=step, margin=margin, start=start, direction=d)
                if pts is None:
                    continue
                if _tube_taken(canvas, pts, outer):
                    continue
                su, angles, flat, vals, mflat, _ = _render_filament(
                    kind, pts, vs_nm, entry, custom, canvas.shape, mask_threshold, order, scale
                )
                if len(mflat) == 0 or canvas.occ_flat[mflat].any():
                    continue
                mz = mflat // canvas.strides[0]
                if mz.min() < z0 or mz.max() >= z1:
                    continue
                tmp = first_tmp - len(placed)
                canvas.occ_flat[mflat] = tmp
                canvas.cls_flat[mflat] = cid
                canvas.density.reshape(-1)[flat] += vals
                placed.append(
                    dict(
                        entry=entry,
                        class_id=cid,
                        tmp_id=tmp,
                        path=pts,
                        subunits=su,
                        angles=angles,
                        n_voxels=int(len(mflat)),
                    )
                )
                break
    return placed


def _place_membrane_proteins(
    canvas: _Canvas,
    classes,
    membranes,
    rng,
    slab,
    *,
    mask_threshold,
    order,
    vs_nm,
    first_id: int,
    max_tries: int,
    progress=None,
):
    """Membrane proteins on their membrane's surface, axis along the local normal, random spin about it.

    A protein may cover voxels of its own membrane (it displaces the lipid there: the membrane's density
    in the protein's mask is removed and the voxels become the protein's), never any other structure.
    """
    # lazy: pandas
    from faket.layout.membranes import align_rotation

    rows = []
    pid = first_id - 1
    z0, z1 = slab
    shape = np.asarray(canvas.shape)
    dens_flat = canvas.density.reshape(-1)
    for cls, entry in classes:
        prep = _prepare(cls, mask_threshold)
        hosts = [m for m in membranes if m["entry"]["name"] == entry["membrane"]]
        axis = np.asarray(entry["axis"], float)
        axis /= np.linalg.norm(axis)
        ins = entry["insertion_nm"] / vs_nm
        for _ in range(cls.count):
            for _attempt in range(min(max_tries, 400) if hosts else 0):
                host = hosts[int(rng.integers(len(hosts)))]
                hit = host["membrane"].sample_surface(rng, canvas.shape, slab)
                if hit is None:
                    continue
                p, n = hit
                side = {"outer": 1.0, "inner": -1.0}.get(entry["leaflet"]) or (1.0 if rng.random() < 0.5 else -1.0)
                n = side * n
                rot = align_rotation(axis, n) @ _spin(axis, rng.uniform(0, 2 * np.pi))
                angles = _rotation_relion(rot)
                centre_xyz = p + ins * n
                czyx = centre_xyz[::-1]
                c = np.floor(czyx + 0.5).astype(np.int64)
                inst = _instance(prep, angles, order, shift_zyx=czyx - c)
                vox = c + inst.mask_off
                if (
                    vox[:, 0].min() < z0
                    or vox[:, 0].max() >= z1
                    or np.any(vox.min(0) < 0)
                    or np.any(vox.max(0) >= shape)
                ):
                    continue
                flat = vox @ canvas.strides
                cur = canvas.occ_flat[flat]
                if not np.all((cur == 0) | (cur == host["tmp_id"])):
                    continue
                pid += 1
                lipid = flat[cur == host["tmp_id"]]
                dens_flat[lipid] = 0.0
                canvas.occ_flat[flat] = pid
                canvas.cls_flat[flat] = cls.class_id
                canvas.add_density(inst, c)
                rows.append(
                    (
                        pid,
                        cls.class_id,
                        cls.name,
                        float(centre_xyz[0]),
                        float(centre_xyz[1]),
                        float(centre_xyz[2]),
                        *(float(a) for a in angles),
                    )
                )
                break
            if progress:
                progress(1)
    return rows


MEMBRANE_COLUMNS = (
    "membrane_id",
    "instance_id",
    "class_id",
    "class_name",
    "shape",
    "x",
    "y",
    "z",
    "radius_x_nm",
    "radius_y_nm",
    "radius_z_nm",
    "thickness_nm",
    "rot",
    "tilt",
    "psi",
    "n_voxels",
)
FILAMENT_COLUMNS = ("filament_id", "instance_id", "class_id", "class_name", "point", "x", "y", "z", "arc_nm")
SUBUNIT_COLUMNS = (
    "filament_id",
    "instance_id",
    "class_id",
    "class_name",
    "subunit",
    "strand",
    "x",
    "y",
    "z",
    "rot",
    "tilt",
    "psi",
)
INSTANCE_COLUMNS = ("instance_id", "kind", "class_id", "class_name", "item_id")


def _cellular_tables(membranes, filaments, n_particles: int, vs_nm: float, point_spacing_nm: float = 4.0):
    mrows = []
    for k, m in enumerate(membranes, start=1):
        mem = m["membrane"]
        half = mem.thickness / 2
        if mem.shape == "plane":
            r = (np.nan, np.nan, np.nan)
        elif mem.shape == "tube":
            r = (
                (mem.radii[0] + half) * vs_nm,
                (mem.radii[1] + half) * vs_nm,
                mem.radii[2] * vs_nm if np.isfinite(mem.radii[2]) else np.inf,
            )
        else:
            r = tuple((mem.radii + half) * vs_nm)
        ang = _rotation_relion(mem.rotation)
        mrows.append(
            (
                k,
                n_particles + k,
                m["class_id"],
                m["entry"]["name"],
                mem.shape,
                *mem.centre,
                *r,
                mem.thickness * vs_nm,
                *ang,
                m["n_voxels"],
            )
        )
    nm = len(membranes)
    prow, srow = [], []
    for f, fil in enumerate(filaments, start=1):
        iid = n_particles + nm + f
        name = fil["entry"]["name"]
        pts = fil["path"]
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(seg)]) * vs_nm
        every = max(1, int(round(point_spacing_nm / max(1e-9, float(np.median(seg)) * vs_nm))))
        idx = list(range(0, len(pts), every))
        if idx[-1] != len(pts) - 1:
            idx.append(len(pts) - 1)
        for j, i in enumerate(idx):
            prow.append((f, iid, fil["class_id"], name, j, *pts[i], arc[i]))
        su = fil["subunits"]
        order = np.lexsort((su["strand"], su["index"]))  # along the filament (actin: the genetic helix)
        for j, i in enumerate(order):
            srow.append((f, iid, fil["class_id"], name, j, int(su["strand"][i]), *su["pos"][i], *fil["angles"][i]))
    mdf = pd.DataFrame(mrows, columns=list(MEMBRANE_COLUMNS))
    fdf = pd.DataFrame(prow, columns=list(FILAMENT_COLUMNS))
    sdf = pd.DataFrame(srow, columns=list(SUBUNIT_COLUMNS))
    return mdf, fdf, sdf


def cellular_layout(
    spec: dict,
    table: list[dict],
    classes: list[LayoutClass],
    box,
    slab,
    *,
    seed: int,
    order: int,
    allow_fewer: bool,
    cache_dir,
    progress=None,
) -> Layout:
    """Membranes, then filaments, then membrane proteins, then soluble particles (largest first)."""
    vs = float(spec["voxel_size"])
    vs_nm = vs / 10.0
    k = len(classes)
    m_ids = list(range(k + 1, k + 1 + len(spec["membranes"])))
    f_ids = list(range(m_ids[-1] + 1 if m_ids else k + 1, (m_ids[-1] + 1 if m_ids else k + 1) + len(spec["filaments"])))
    canvas = _Canvas(box, max([k] + m_ids + f_ids))
    membrane_mask = np.zeros(canvas.shape, np.uint8)
    rng_s = np.random.default_rng([seed, 15])  # structures; soluble particles keep default_rng(seed)
    membranes = _place_membranes(canvas, spec["membranes"], m_ids, rng_s, vs_nm, slab, membrane_mask)
    filaments = _place_filaments(
        canvas,
        spec["filaments"],
        f_ids,
        rng_s,
        vs,
        slab,
        mask_threshold=spec["mask_threshold"],
        order=order,
        cache_dir=cache_dir,
        first_tmp=-(len(membranes) + 1),
    )
    mp = [(c, t) for c, t in zip(classes, table) if t["kind"] == "membrane_protein" and c.count > 0]
    rows = _place_membrane_proteins(
        canvas,
        mp,
        membranes,
        rng_s,
        slab,
        mask_threshold=spec["mask_threshold"],
        order=order,
        vs_nm=vs_nm,
        first_id=1,
        max_tries=spec["max_tries"],
        progress=progress,
    )
    soluble = [c for c, t in zip(classes, table) if t["kind"] != "membrane_protein"]
    lay = random_layout(
        soluble,
        box,
        seed=seed,
        slab_z=slab,
        mask_threshold=spec["mask_threshold"],
        order=order,
        max_tries=spec["max_tries"],
        allow_fewer=True,
        progress=progress,
        canvas=canvas,
        first_id=len(rows) + 1,
    )
    mp_df = pd.DataFrame(rows, columns=list(COLUMNS)) if rows else None
    df = (
        lay.particles
        if mp_df is None
        else check_particles(pd.concat([mp_df, lay.particles], ignore_index=True), "layout")
    )
    n = len(df)
    neg = canvas.occupancy < 0
    canvas.occupancy[neg] = n - canvas.occupancy[neg]  # -k -> n + k
    mdf, fdf, sdf = _cellular_tables(membranes, filaments, n, vs_nm)
    requested = {c.name: int(c.count) for c in classes}
    placed = dict(lay.placed)
    for c, _ in mp:
        placed[c.name] = int((df["class_name"] == c.name).sum())
    for c, _t in zip(classes, table):
        placed.setdefault(c.name, 0)
    for e in spec["membranes"]:
        requested[e["name"]] = int(e["count"])
        placed[e["name"]] = sum(1 for m in membranes if m["entry"] is e)
    for e in spec["filaments"]:
        requested[e["name"]] = int(e["count"])
        placed[e["name"]] = sum(1 for f in filaments if f["entry"] is e)
    placed = {k2: placed[k2] for k2 in requested}
    mp_names = {c.name for c, _ in mp}
    inst = [
        (
            int(r.particle_id),
            "membrane_protein" if r.class_name in mp_names else "particle",
            int(r.class_id),
            r.class_name,
            int(r.particle_id),
        )
        for r in df.itertuples(index=False)
    ]
    inst += [
        (int(r.instance_id), "membrane", int(r.class_id), r.class_name, int(r.membrane_id))
        for r in mdf.itertuples(index=False)
    ]
    inst += [
        (n + len(membranes) + f, "filament", fil["class_id"], fil["entry"]["name"], f)
        for f, fil in enumerate(filaments, start=1)
    ]
    layout = Layout(
        density=canvas.density,
        class_mask=canvas.class_mask,
        occupancy=canvas.occupancy,
        particles=df,
        requested=requested,
        placed=placed,
        membrane_mask=membrane_mask,
        membranes=mdf,
        filaments=fdf,
        subunits=sdf,
        instances=pd.DataFrame(inst, columns=list(INSTANCE_COLUMNS)),
    )
    short = {k2: (placed[k2], requested[k2]) for k2 in requested if placed[k2] < requested[k2]}
    if short and not allow_fewer:
        detail = ", ".join(f"{k2} {a}/{b}" for k2, (a, b) in short.items())
        raise NotEnoughRoom(
            f"only {sum(placed.values())} of {sum(requested.values())} requested structures fit "
            f"({detail}); lower the counts/sizes, enlarge the box or slab, or pass --allow-fewer",
            layout,
        )
    return layout
