"""Atomic models (PDB / mmCIF) -> templates: Coulomb potential from the 5-Gaussian electron scattering
factors (gemmi's c4322), integrated exactly over each voxel, in protein-density units."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from faket.errors import InputError
from faket.layout.templates.base import Template, _check_voxel, _finish, centre_of_mass


def _fe0(symbol: str) -> float:
    """Total electron scattering ``f_e(0) = sum(a_i)`` (A) of an element, from gemmi's c4322 table."""
    # lazy: gemmi
    import gemmi

    return float(sum(gemmi.Element(symbol).c4322.a))


#: Average protein composition (heavy atoms per residue) and volume per residue (A^3) behind
#: :data:`PROTEIN_FE0_PER_A3`: 110 Da at 1.23 A^3/Da (1.35 g/cm^3).
PROTEIN_RESIDUE = {"C": 4.94, "N": 1.36, "O": 1.48, "S": 0.04}
PROTEIN_RESIDUE_VOLUME_A3 = 110.0 * 1.23

#: Sum of electron scattering factors f_e(0) (A) per A^3 of average protein:
#: ``sum(n * f_e0(el) for PROTEIN_RESIDUE) / PROTEIN_RESIDUE_VOLUME_A3`` with gemmi's c4322 table
#: (a literal so importing this module does not import gemmi; a test recomputes it).
PROTEIN_FE0_PER_A3: float = 0.137070806


def _read_structure(path: Path, assembly: str | None):
    # lazy: gemmi
    import gemmi

    if not path.exists():
        raise InputError(f"{path}: atomic model not found")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a PDB / mmCIF file")
    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:  # gemmi raises RuntimeError / ValueError with a message
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot read atomic model ({msg})") from None
    if len(st) == 0:
        raise InputError(f"{path}: atomic model has no atoms")
    st.setup_entities()  # subchains, which assemblies refer to (PDB files have none of their own)
    model = st[0]
    if assembly is not None:
        names = [a.name for a in st.assemblies]
        if assembly == "first":
            assembly = names[0] if names else None
        elif assembly not in names:
            raise InputError(f"{path}: no biological assembly {assembly!r} (defined: {', '.join(names) or 'none'})")
        if assembly is not None:
            asm = next(a for a in st.assemblies if a.name == assembly)
            try:
                model = gemmi.make_assembly(asm, model, gemmi.HowToNameCopiedChain.AddNumber)
            except Exception as exc:  # malformed assembly records
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise InputError(
                    f"{path}: cannot build biological assembly {assembly!r} ({msg}); "
                    "use the deposited chains instead (assembly None)"
                ) from None
    model.remove_hydrogens()
    model.remove_waters()
    return st, model  # keep the structure alive beside its model


def _atom_arrays(model):
    """Positions (N, 3) x, y, z in A; per-atom Gaussian a (N, 5) and b (N, 5); occupancy weights."""
    # lazy: gemmi
    import gemmi

    pos, occ, elems = [], [], []
    for ch in model:
        for res in ch:
            for at in res:
                p = at.pos
                pos.append((p.x, p.y, p.z))
                occ.append(at.occ)
                elems.append(at.element.name)
    if not pos:
        return None
    pos = np.asarray(pos, np.float64)
    occ = np.clip(np.asarray(occ, np.float64), 0, 1)
    if not occ.any():  # some modelling tools write 0 for every atom: treat as fully occupied
        occ[:] = 1.0
    uniq = sorted(set(elems))
    table_a, table_b = {}, {}
    for e in uniq:
        el = gemmi.Element(e)
        if el.atomic_number == 0:  # unknown element "X": treat as carbon
            el = gemmi.Element("C")
        table_a[e] = np.asarray(el.c4322.a, np.float64)
        table_b[e] = np.asarray(el.c4322.b, np.float64)
    a = np.stack([table_a[e] for e in elems]) * occ[:, None]
    b = np.stack([table_b[e] for e in elems])
    return pos, a, b


def _erf_weights(xv: np.ndarray, sig_v: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """1-D voxel integrals of unit Gaussians at ``xv`` (voxel units, grid voxel i centred at i) with
    sigma ``sig_v``: returns base indices (N,) and weights (N, 2h+1) over ``base + [-h..h]``."""
    # lazy: scipy
    from scipy.special import erf

    base = np.rint(xv).astype(np.int64)
    offs = np.arange(-h, h + 1)
    edges = (base[:, None] + np.concatenate([offs - 0.5, [h + 0.5]])[None, :]) - xv[:, None]
    cdf = 0.5 * (1.0 + erf(edges / (np.sqrt(2.0) * sig_v[:, None])))
    return base, np.diff(cdf, axis=1)


def _deposit_atoms(
    pos_zyx_v: np.ndarray, a: np.ndarray, b: np.ndarray, n: int, v: float, sigma_extra_a: float
) -> np.ndarray:
    """Sum over atoms and Gaussian terms of a_i * voxel-mean Gaussian; positions in voxel indices."""
    out = np.zeros(n * n * n, np.float64)
    for t in range(a.shape[1]):
        sig_a = np.sqrt(b[:, t] / (8 * np.pi**2) + sigma_extra_a**2)  # Angstrom
        # group atoms by window half-width so each group is one vectorised block
        hs = np.ceil(4.0 * sig_a / v + 0.5).astype(int)
        for h in np.unique(hs):
            sel = np.nonzero(hs == h)[0]
            k = 2 * h + 1
            chunk = max(1, int(4e6 // (k**3)))
            for s0 in range(0, sel.size, chunk):
                idx = sel[s0 : s0 + chunk]
                sv = sig_a[idx] / v
                bz, wz = _erf_weights(pos_zyx_v[idx, 0], sv, h)
                by, wy = _erf_weights(pos_zyx_v[idx, 1], sv, h)
                bx, wx = _erf_weights(pos_zyx_v[idx, 2], sv, h)
                w = a[idx, t][:, None, None, None] * wz[:, :, None, None] * wy[:, None, :, None] * wx[:, None, None, :]
                offs = np.arange(-h, h + 1)
                iz = bz[:, None] + offs
                iy = by[:, None] + offs
                ix = bx[:, None] + offs
                flat = (iz[:, :, None, None] * n + iy[:, None, :, None]) * n + ix[:, None, None, :]
                out += np.bincount(flat.ravel(), weights=w.ravel(), minlength=n**3)[: n**3]
    return out.reshape(n, n, n)


def template_from_atoms(
    path,
    voxel_size_a: float,
    name: str | None = None,
    *,
    resolution_a: float | None = None,
    assembly: str | None = "first",
) -> Template:
    """A template from a PDB / mmCIF model: Coulomb potential in protein-density units.

    Uses the first model; ``assembly="first"`` (default) builds the file's first biological assembly
    when it defines one (a particle in a cell is the assembly, e.g. both GroEL rings), a name picks
    another, ``None`` keeps the deposited chains. ``resolution_a`` adds a Gaussian blur of sigma
    ``0.225 * resolution_a`` (Chimera ``molmap`` convention). Units and sampling: module docstring.
    """
    v = _check_voxel(voxel_size_a)
    p = Path(path)
    if resolution_a is not None and (not np.isfinite(resolution_a) or resolution_a < 0):
        raise InputError(f"{p}: resolution {resolution_a!r} must be a non-negative number of Angstrom")
    _st, model = _read_structure(p, assembly)
    arrs = _atom_arrays(model)
    if arrs is None:
        raise InputError(f"{p}: atomic model has no atoms")
    pos_xyz, a, b = arrs
    sigma_extra = 0.225 * float(resolution_a) if resolution_a else 0.0
    w = a.sum(1)
    com = (pos_xyz * w[:, None]).sum(0) / w.sum()
    rel = pos_xyz - com
    sig_max = float(np.sqrt(b.max() / (8 * np.pi**2) + sigma_extra**2))
    r_max = float(np.sqrt((rel**2).sum(1)).max()) + 4.0 * sig_max + v
    h = int(math.ceil(r_max / v + 1))
    n = 2 * h + 1
    c = (n - 1) / 2

    def deposit(shift_xyz):
        pz = (rel[:, 2] - shift_xyz[2]) / v + c
        py = (rel[:, 1] - shift_xyz[1]) / v + c
        px = (rel[:, 0] - shift_xyz[0]) / v + c
        return _deposit_atoms(np.stack([pz, py, px], 1), a, b, n, v, sigma_extra)

    d = deposit(np.zeros(3))
    # The voxel-integrated map's centre of mass equals the atoms' one up to window truncation; remove
    # the tiny residual so the contract (centre of mass on the centre voxel) holds to ~1e-3 voxel.
    resid = (centre_of_mass(d) - c)[::-1] * v  # x, y, z in A
    if np.abs(resid).max() > 1e-3 * v:
        d = deposit(resid)
    d *= 1.0 / (v**3 * PROTEIN_FE0_PER_A3)
    nm = name or p.name.split(".")[0]
    return _finish(nm, d, v, str(p))
