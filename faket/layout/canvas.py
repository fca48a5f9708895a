"""Placing particles: template preparation, the occupancy canvas, random and given layouts (pure arrays)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from faket.errors import InputError
from faket.formats.table import COLUMNS, check_particles
from faket.rotation import random_relion_angles, rotate_volume


class NotEnoughRoom(InputError):
    """Raised when a random layout could not place every requested particle (see ``layout``)."""

    def __init__(self, message: str, layout: Layout):
        super().__init__(message)
        self.layout = layout


@dataclass
class LayoutClass:
    """A particle class: id (1..K), name, template ``(Z, Y, X)`` and how many to place."""

    class_id: int
    name: str
    template: np.ndarray
    count: int = 0
    isotropic: bool = False


@dataclass
class Layout:
    density: np.ndarray
    class_mask: np.ndarray
    occupancy: np.ndarray
    particles: pd.DataFrame
    requested: dict[str, int] = field(default_factory=dict)
    placed: dict[str, int] = field(default_factory=dict)
    overlap_voxels: int = 0
    centres_taken: list[int] = field(default_factory=list)
    clipped: list[int] = field(default_factory=list)
    # cellular layouts (membranes, filaments): None without them
    membrane_mask: np.ndarray | None = None  # uint8: 1 on membrane bilayer voxels
    membranes: pd.DataFrame | None = None  # one row per membrane
    filaments: pd.DataFrame | None = None  # polylines: one row per point
    subunits: pd.DataFrame | None = None  # one row per filament subunit
    instances: pd.DataFrame | None = None  # occupancy id -> kind, class, item id


def _template_entry(c: dict, voxel_size_a: float, cache_dir, name: str | None = None) -> dict:
    # lazy: pandas
    from faket.layout.templates import load_template

    kw = {}
    if "map_voxel_size" in c:
        kw["map_voxel_size_a"] = c["map_voxel_size"]
    if "resolution" in c:
        kw["resolution_a"] = c["resolution"]
    t = load_template(c["template"], voxel_size_a, name=name or c.get("name"), cache_dir=cache_dir, **kw)
    kind = "membrane_protein" if "membrane" in c else "particle"
    out = dict(
        name=name or c.get("name") or t.name,
        kind=kind,
        density=t.density,
        source=t.source,
        diameter_nm=float(t.diameter_nm),
        count=c.get("count"),
        fraction=c.get("fraction"),
        isotropic=False,
    )
    if kind == "membrane_protein":
        out.update({k: c[k] for k in ("membrane", "insertion_nm", "axis", "leaflet")})
    return out


def _odd_box(radius_vox: float, margin: int = 3) -> int:
    n = int(np.ceil(2 * radius_vox)) + 2 * margin + 1
    return n + (1 - n % 2)


def _radius_grid(n: int) -> np.ndarray:
    c = (n - 1) / 2
    a = np.arange(n, dtype=np.float32) - c
    return np.sqrt(a[:, None, None] ** 2 + a[None, :, None] ** 2 + a[None, None, :] ** 2)


def vesicle_template(
    diameter_nm: float, voxel_size_a: float, *, membrane_thickness_nm: float = 4.0, value: float = 1.0
) -> np.ndarray:
    """A hollow sphere with a lipid-bilayer radial profile (outer diameter ``diameter_nm``).

    Profile across the membrane: two head-group Gaussians (peak ``value``) at +-0.35 thickness from the
    mid-plane plus a weaker hydrocarbon core (0.35 ``value``); widths never below 0.6 voxel so the
    bilayer stays resolved on coarse grids.
    """
    vs_nm = voxel_size_a / 10.0
    t = membrane_thickness_nm / vs_nm
    r_mid = diameter_nm / vs_nm / 2 - t / 2
    if r_mid <= t:
        raise InputError(
            f"vesicle diameter {diameter_nm:g} nm is too small for a {membrane_thickness_nm:g} nm membrane"
        )
    n = _odd_box(r_mid + t)
    d = _radius_grid(n) - r_mid
    s_head = max(0.15 * t, 0.6)
    s_core = max(0.25 * t, 0.6)
    prof = (
        np.exp(-((d - 0.35 * t) ** 2) / (2 * s_head**2))
        + np.exp(-((d + 0.35 * t) ** 2) / (2 * s_head**2))
        + 0.35 * np.exp(-(d**2) / (2 * s_core**2))
    )
    prof /= prof.max()
    return (value * prof).astype(np.float32)


def fiducial_template(diameter_nm: float, voxel_size_a: float, *, value: float = 1.0) -> np.ndarray:
    """A gold bead: a uniform ball of ``value`` with an anti-aliased (one voxel) edge."""
    r = diameter_nm * 10.0 / voxel_size_a / 2
    if r < 0.5:
        raise InputError(f"fiducial diameter {diameter_nm:g} nm is below one voxel ({voxel_size_a:g} A)")
    n = _odd_box(r, margin=2)
    ball = np.clip(r + 0.5 - _radius_grid(n), 0.0, 1.0)
    return (value * ball).astype(np.float32)


@dataclass
class _Prepared:
    cls: LayoutClass
    template: np.ndarray  # odd cube big enough for any rotation, centre at (m - 1) / 2
    threshold: float  # absolute
    mask_voxels: int  # unrotated mask size (for fractions and ordering)


@dataclass
class _Instance:
    mask_off: np.ndarray  # (n, 3) int offsets (dz, dy, dx) of mask voxels from the centre voxel
    dens: np.ndarray  # density crop
    dens_lo: np.ndarray  # (3,) offset of dens[0, 0, 0] from the centre voxel
    lo: np.ndarray  # (3,) min mask offset
    hi: np.ndarray  # (3,) max mask offset


def prepare_template(template: np.ndarray, *, mask_threshold: float = 0.1, name: str = "template"):
    """Pad ``template`` into an odd cube that holds it in any orientation; return (cube, threshold)."""
    t = np.asarray(template, dtype=np.float32)
    if t.ndim != 3 or t.size == 0:
        raise InputError(f"template {name!r}: expected a 3-D array, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise InputError(f"template {name!r}: contains NaN/Inf")
    if t.min() < 0:
        t = np.maximum(t, 0)
    tmax = float(t.max())
    if tmax <= 0:
        raise InputError(f"template {name!r}: empty (no positive density)")
    if not 0 < mask_threshold < 1:
        raise InputError(f"mask_threshold {mask_threshold}: must be between 0 and 1")
    c = (np.asarray(t.shape) - 1) / 2
    nz = np.argwhere(t > tmax * 1e-6)
    r = float(np.sqrt(((nz - c) ** 2).sum(axis=1)).max()) if len(nz) else 0.0
    m = _odd_box(r, margin=1)
    if all(s == m for s in t.shape) and m % 2 == 1:
        cube = t
    else:
        cube = np.zeros((m, m, m), np.float32)
        if all(s % 2 == 1 for s in t.shape):  # integer centre: pad/crop without interpolation
            cc = (m - 1) // 2
            src = [slice(max(0, (s - 1) // 2 - cc), min(s, (s - 1) // 2 - cc + m)) for s in t.shape]
            dst = [slice(sl.start - ((s - 1) // 2 - cc), sl.stop - ((s - 1) // 2 - cc)) for sl, s in zip(src, t.shape)]
            cube[tuple(dst)] = t[tuple(src)]
        else:  # half-voxel centre: resample onto the odd grid (centre to centre)
            cube = rotate_volume(t, (0.0, 0.0, 0.0), order=1, output_shape=(m, m, m))
    return cube, mask_threshold * tmax


def _prepare(cls: LayoutClass, mask_threshold: float) -> _Prepared:
    cube, thr = prepare_template(cls.template, mask_threshold=mask_threshold, name=cls.name)
    return _Prepared(cls=cls, template=cube, threshold=thr, mask_voxels=int((cube > thr).sum()) or 1)


def _instance(p: _Prepared, angles, order: int, shift_zyx=(0.0, 0.0, 0.0)) -> _Instance:
    if (p.cls.isotropic or not np.any(angles)) and not np.any(shift_zyx):
        vol = p.template
    else:
        vol = rotate_volume(p.template, angles, order=order, shift_zyx=shift_zyx)
    m = vol.shape[0]
    c = (m - 1) // 2
    mask = vol > p.threshold
    mask[c, c, c] = True
    mask_idx = np.argwhere(mask)
    off = (mask_idx - c).astype(np.int64)
    support = np.argwhere(vol > 0)
    lo_d = support.min(axis=0)
    hi_d = support.max(axis=0) + 1
    dens = vol[lo_d[0] : hi_d[0], lo_d[1] : hi_d[1], lo_d[2] : hi_d[2]]
    return _Instance(
        mask_off=off, dens=dens, dens_lo=(lo_d - c).astype(np.int64), lo=off.min(axis=0), hi=off.max(axis=0)
    )


def counts_from_fractions(
    fractions: Mapping[str, float], mask_voxels: Mapping[str, int], slab_voxels: int
) -> dict[str, int]:
    """Volume fraction of the slab per class -> particle counts (rounded)."""
    return {k: int(round(f * slab_voxels / max(1, mask_voxels[k]))) for k, f in fractions.items()}


class _Canvas:
    def __init__(self, box_zyx, n_class_max: int):
        self.shape = tuple(int(v) for v in box_zyx)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise InputError(f"box {box_zyx}: expected three positive sizes Z, Y, X")
        self.density = np.zeros(self.shape, np.float32)
        self.occupancy = np.zeros(self.shape, np.int32)
        self.class_mask = np.zeros(self.shape, np.uint8 if n_class_max <= 255 else np.int16)
        nz, ny, nx = self.shape
        self.strides = np.array([ny * nx, nx, 1], dtype=np.int64)
        self.occ_flat = self.occupancy.reshape(-1)
        self.cls_flat = self.class_mask.reshape(-1)

    def add_density(self, inst: _Instance, centre_zyx) -> bool:
        """Add the instance's density at ``centre``; returns True when it was clipped at the box."""
        start = np.asarray(centre_zyx, dtype=np.int64) + inst.dens_lo
        stop = start + np.asarray(inst.dens.shape)
        a = np.maximum(start, 0)
        b = np.minimum(stop, self.shape)
        if np.any(b <= a):
            return True
        src = tuple(slice(int(a[i] - start[i]), int(b[i] - start[i])) for i in range(3))
        dst = tuple(slice(int(a[i]), int(b[i])) for i in range(3))
        self.density[dst] += inst.dens[src]
        return bool(np.any(a > start) or np.any(b < stop))


def _check_classes(classes: Sequence[LayoutClass]) -> None:
    seen_ids, seen_names = set(), set()
    for c in classes:
        if c.class_id < 1 or c.class_id > 32767:
            raise InputError(f"class {c.name!r}: class_id {c.class_id} must be in 1..32767")
        if c.class_id in seen_ids:
            raise InputError(f"class_id {c.class_id} used twice")
        if c.name in seen_names:
            raise InputError(f"class {c.name!r} defined twice")
        if c.count < 0:
            raise InputError(f"class {c.name!r}: count {c.count} must be >= 0")
        seen_ids.add(c.class_id)
        seen_names.add(c.name)


def random_layout(
    classes: Sequence[LayoutClass],
    box_zyx: Sequence[int],
    *,
    seed: int = 0,
    slab_z: tuple[int, int] | None = None,
    mask_threshold: float = 0.1,
    order: int = 1,
    max_tries: int = 2000,
    tries_per_orientation: int = 250,
    give_up_after: int = 3,
    allow_fewer: bool = False,
    progress: Callable[[int], None] | None = None,
    canvas: _Canvas | None = None,
    first_id: int = 1,
) -> Layout:
    """Place ``cls.count`` copies of every class at random, without mask overlaps.

    ``slab_z = (z0, z1)`` confines whole particle masks to Z indices ``[z0, z1)`` (default: the box).
    Raises :class:`NotEnoughRoom` (an :class:`InputError` that carries the partial layout) when some
    particles did not fit, unless ``allow_fewer``. ``progress(n)`` is called with each finished particle.
    ``canvas`` (internal) fills a volume that already holds other structures; ids start at ``first_id``.
    """
    _check_classes(classes)
    if canvas is None:
        canvas = _Canvas(box_zyx, max([c.class_id for c in classes], default=1))
    nz = canvas.shape[0]
    z0, z1 = (0, nz) if slab_z is None else (int(slab_z[0]), int(slab_z[1]))
    if not (0 <= z0 < z1 <= nz):
        raise InputError(f"slab {z0}:{z1} must lie within the box Z range 0:{nz}")
    bounds_lo = np.array([z0, 0, 0], dtype=np.int64)
    bounds_hi = np.array([z1, canvas.shape[1], canvas.shape[2]], dtype=np.int64)
    rng = np.random.default_rng(seed)
    prepared = [_prepare(c, mask_threshold) for c in classes if c.count > 0]
    prepared.sort(key=lambda p: (-p.mask_voxels, p.cls.class_id))

    rows: list[tuple] = []
    placed = {c.name: 0 for c in classes}
    requested = {c.name: int(c.count) for c in classes}
    pid = first_id - 1
    for p in prepared:
        fails = 0
        for _ in range(p.cls.count):
            if fails >= give_up_after:
                if progress:
                    progress(1)
                continue
            res = _place_random(
                canvas,
                p,
                rng,
                bounds_lo,
                bounds_hi,
                order=order,
                max_tries=max_tries,
                tries_per_orientation=tries_per_orientation,
            )
            if res is None:
                fails += 1
            else:
                fails = 0
                centre, angles, inst = res
                pid += 1
                flat = int(centre @ canvas.strides) + inst.mask_off @ canvas.strides
                canvas.occ_flat[flat] = pid
                canvas.cls_flat[flat] = p.cls.class_id
                canvas.add_density(inst, centre)
                rows.append(
                    (
                        pid,
                        p.cls.class_id,
                        p.cls.name,
                        float(centre[2]),
                        float(centre[1]),
                        float(centre[0]),
                        *(float(a) for a in angles),
                    )
                )
                placed[p.cls.name] += 1
            if progress:
                progress(1)
    df = check_particles(
        pd.DataFrame(rows, columns=list(COLUMNS)) if rows else pd.DataFrame({c: [] for c in COLUMNS}), "layout"
    )
    layout = Layout(
        density=canvas.density,
        class_mask=canvas.class_mask,
        occupancy=canvas.occupancy,
        particles=df,
        requested=requested,
        placed=placed,
    )
    short = {k: (placed[k], requested[k]) for k in requested if placed[k] < requested[k]}
    if short and not allow_fewer:
        total_p = sum(placed.values())
        total_r = sum(requested.values())
        detail = ", ".join(f"{k} {a}/{b}" for k, (a, b) in short.items())
        raise NotEnoughRoom(
            f"only {total_p} of {total_r} requested particles fit ({detail}); lower the "
            "counts/fractions, enlarge the box or slab, or pass --allow-fewer",
            layout,
        )
    return layout


def _place_random(
    canvas: _Canvas,
    p: _Prepared,
    rng: np.random.Generator,
    bounds_lo,
    bounds_hi,
    *,
    order: int,
    max_tries: int,
    tries_per_orientation: int,
    batch: int = 64,
):
    tries = 0
    while tries < max_tries:
        if p.cls.isotropic:
            angles = np.zeros(3)
        else:
            angles = random_relion_angles(1, rng)[0]
        inst = _instance(p, angles, order)
        lo_c = bounds_lo - inst.lo  # centre range so the whole mask is inside
        hi_c = bounds_hi - inst.hi  # exclusive
        if np.any(hi_c <= lo_c):
            return None
        offs = inst.mask_off @ canvas.strides
        k_sample = min(len(offs), 48)
        sample = np.concatenate([[0], rng.choice(offs, size=k_sample, replace=False)])
        budget = min(tries_per_orientation, max_tries - tries)
        used = 0
        while used < budget:
            k = min(batch, budget - used)
            cz = rng.integers(lo_c[0], hi_c[0], k)
            cy = rng.integers(lo_c[1], hi_c[1], k)
            cx = rng.integers(lo_c[2], hi_c[2], k)
            base = cz * canvas.strides[0] + cy * canvas.strides[1] + cx
            free = ~(canvas.occ_flat[base[:, None] + sample[None, :]] != 0).any(axis=1)
            for j in np.flatnonzero(free):
                if not canvas.occ_flat[base[j] + offs].any():
                    return np.array([cz[j], cy[j], cx[j]], dtype=np.int64), angles, inst
            used += k
        tries += budget
        if p.cls.isotropic and tries >= max_tries:
            break
    return None


def place_particles(
    templates: Mapping[str, np.ndarray],
    particles: pd.DataFrame,
    box_zyx: Sequence[int],
    *,
    mask_threshold: float = 0.1,
    order: int = 1,
    isotropic: Sequence[str] = (),
    source: str = "particle list",
    progress: Callable[[int], None] | None = None,
) -> Layout:
    """Put every particle of the table at its centre and orientation (table order; ids and classes kept).

    ``templates`` maps each ``class_name`` of the table to its density; a missing one is an error. Classes
    named in ``isotropic`` (spheres: vesicles, beads) are not rotated.
    """
    df = check_particles(particles, source)
    box = tuple(int(v) for v in box_zyx)
    unknown = sorted(set(df["class_name"]) - set(templates))
    if unknown:
        raise InputError(f"{source}: unknown class {unknown[0]!r} (known: {', '.join(sorted(templates)) or 'none'})")
    xyz = df[["x", "y", "z"]].to_numpy()
    centre = np.floor(xyz[:, ::-1] + 0.5).astype(np.int64)  # (z, y, x) voxel
    outside = np.any((centre < 0) | (centre >= np.asarray(box)), axis=1)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        r = df.iloc[i]
        raise InputError(
            f"{source}: particle {int(r['particle_id'])} at x={r['x']:g} y={r['y']:g} "
            f"z={r['z']:g} is outside the box (X {box[2]}, Y {box[1]}, Z {box[0]}); "
            f"{int(outside.sum())} particle(s) outside"
        )
    class_ids = df.groupby("class_name")["class_id"].first().to_dict()
    canvas = _Canvas(box, int(df["class_id"].max()) if len(df) else 1)
    prepared = {}
    for name in sorted(set(df["class_name"])):
        cls = LayoutClass(
            class_id=int(class_ids[name]), name=name, template=templates[name], isotropic=name in set(isotropic)
        )
        prepared[name] = _prepare(cls, mask_threshold)
    layout = Layout(density=canvas.density, class_mask=canvas.class_mask, occupancy=canvas.occupancy, particles=df)
    shape = np.asarray(box)
    centres: set[int] = set()
    for i, r in enumerate(df.itertuples(index=False)):
        p = prepared[r.class_name]
        shift = xyz[i, ::-1] - centre[i]
        inst = _instance(p, (r.rot, r.tilt, r.psi), order, shift_zyx=shift)
        vox = centre[i] + inst.mask_off
        inside = np.all((vox >= 0) & (vox < shape), axis=1)
        if not inside.all():
            layout.clipped.append(int(r.particle_id))
        flat = vox[inside] @ canvas.strides
        cur = canvas.occ_flat[flat]
        free = cur == 0
        layout.overlap_voxels += int((~free).sum())
        canvas.occ_flat[flat[free]] = r.particle_id
        canvas.cls_flat[flat[free]] = r.class_id
        # the centre voxel always carries its own particle, unless it is another particle's centre
        cflat = int(centre[i] @ canvas.strides)
        if cflat in centres:
            layout.centres_taken.append(int(r.particle_id))
        else:
            centres.add(cflat)
            canvas.occ_flat[cflat] = r.particle_id
            canvas.cls_flat[cflat] = r.class_id
        canvas.add_density(inst, centre[i])
        if progress:
            progress(1)
    counts = df["class_name"].value_counts().to_dict()
    layout.requested = {k: int(v) for k, v in counts.items()}
    layout.placed = dict(layout.requested)
    return layout
