"""Particle templates: built-in shapes, MRC maps, atomic models, cache, bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from faket.errors import InputError
from faket.layout import templates as T
from faket.layout.templates import centre_of_mass

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHREC_PDBS = ["1bxn", "1qvr", "1s3x", "1u6g", "2cg9", "3cf3", "3d2f", "3gl1", "3h84", "3qm1"]


def shared(*parts) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared test data not found: {p}")
    return p


def write_mrc(path, data, voxel_size):
    import mrcfile

    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data, np.float32))
        if voxel_size:
            m.voxel_size = voxel_size
    return Path(path)


def check_contract(t: T.Template):
    d = t.density
    n = d.shape[0]
    assert d.dtype == np.float32
    assert d.shape == (n, n, n) and n % 2 == 1
    assert d.min() >= 0 and d.max() > 0
    c = (n - 1) / 2
    com = centre_of_mass(d)
    assert np.abs(com - c).max() < 0.02, com - c
    # zero padding: every non-zero voxel lies inside the inscribed sphere with an interpolation margin
    idx = np.argwhere(d > 0)
    r = np.sqrt(((idx - c) ** 2).sum(1)).max()
    assert r + np.sqrt(3) <= c + 1e-9


def pad_to(d, n):
    p = (n - d.shape[0]) // 2
    return np.pad(d, p)


def corr(a, b):
    n = max(a.shape[0], b.shape[0])
    return float(np.corrcoef(pad_to(a, n).ravel(), pad_to(b, n).ravel())[0, 1])


# --------------------------------------------------------------------------------------------------
# built-in shapes


def test_builtin_library_contract_sizes_and_determinism():
    assert len(T.BUILTIN_NAMES) >= 8
    diam = {}
    for name in T.BUILTIN_NAMES:
        t = T.builtin_template(name, 10.0)
        check_contract(t)
        assert t.source == f"builtin:{name}" and t.name == name
        assert abs(float(t.density.max()) - 1.0) < 1e-6  # solid protein = 1 inside
        assert 0.0 < np.mean((t.density > 0) & (t.density < 1)) < 0.2  # smooth (partial) edge voxels
        assert 4.5 <= t.diameter_nm <= 30.0, (name, t.diameter_nm)
        diam[name] = t.diameter_nm
        again = T.builtin_template(name, 10.0)
        assert np.array_equal(again.density, t.density)
    assert min(diam.values()) < 7 and max(diam.values()) > 25
    assert len({round(v) for v in diam.values()}) >= 7  # they differ in size


def test_builtin_scales_with_voxel_size():
    # Defined in nm: volume (nm^3) and diameter agree at 5 and 10 A; the 1-voxel ramp keeps volumes exact.
    for name in ("globule", "ring", "lshape"):
        a = T.builtin_template(name, 10.0)
        b = T.builtin_template(name, 5.0)
        check_contract(b)
        va, vb = a.density.sum() * 1.0, b.density.sum() * 0.125
        assert abs(va / vb - 1) < 0.05, (name, va, vb)  # 4 % for the 5 nm globule (curvature)
        assert abs(a.diameter_nm - b.diameter_nm) < 1.0


def test_builtins_are_mostly_asymmetric():
    """A rotational symmetry axis is a principal axis of inertia: turning a shape about each principal
    axis by 72, 90, 120 and 180 degrees finds C2..C6 and continuous symmetry. Most shapes have none."""
    from scipy.ndimage import affine_transform
    from scipy.spatial.transform import Rotation

    asym = []
    for name in T.BUILTIN_NAMES:
        d = T.builtin_template(name, 10.0).density.astype(np.float64)
        n = d.shape[0]
        c = np.full(3, (n - 1) / 2)
        g = np.indices(d.shape).reshape(3, -1) - c[:, None]
        inertia = (g * d.ravel()) @ g.T
        _, axes = np.linalg.eigh(inertia)
        best = 0.0
        for k in range(3):
            for ang in (72, 90, 120, 180):
                R = Rotation.from_rotvec(np.deg2rad(ang) * axes[:, k]).as_matrix()
                r = affine_transform(d, R, offset=c - R @ c, order=1)
                best = max(best, corr(d, r))
        if best < 0.9:
            asym.append(name)
    assert len(asym) >= 7, asym  # measured: 7 of 10 (globule mildly, dumbbell and barrel axially symmetric)
    assert "dumbbell" not in asym  # sanity: an axially symmetric shape is found symmetric


def test_any_rotation_stays_inside_box():
    from scipy.ndimage import affine_transform
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    for name in ("rod", "tripod", "ribosome_like"):
        d = T.builtin_template(name, 10.0).density.astype(np.float64)
        n = d.shape[0]
        c = np.full(3, (n - 1) / 2)
        for _ in range(3):
            R = Rotation.random(random_state=rng).as_matrix()
            out = affine_transform(d, R, offset=c - R @ c, order=1, mode="constant", cval=0.0)
            assert abs(out.sum() / d.sum() - 1) < 0.02
            assert out[[0, -1]].sum() == 0 and out[:, [0, -1]].sum() == 0 and out[:, :, [0, -1]].sum() == 0


def test_builtin_bad_input():
    with pytest.raises(InputError, match="unknown built-in.*ring"):
        T.builtin_template("doughnut", 10.0)
    with pytest.raises(InputError, match="positive"):
        T.builtin_template("ring", 0)
    with pytest.raises(InputError, match="positive"):
        T.load_template("ring", -3.0)
    with pytest.raises(InputError) as exc:
        T.load_template("doughnut", 10.0)
    msg = str(exc.value)
    assert "doughnut" in msg and all(n in msg for n in T.BUILTIN_NAMES) and "\n" not in msg
    assert T.load_template("builtin:blob3", 10.0).name == "blob3"


# --------------------------------------------------------------------------------------------------
# maps


def test_map_resampled_centred_background_removed():
    # A built-in at 5 A, placed off-centre in a bigger box, with a background level, gentle noise
    # and negative values, then brought to 10 A, must match the same built-in made at 10 A.
    fine = T.builtin_template("dumbbell", 5.0).density
    n = fine.shape[0]
    box = np.zeros((n + 20, n + 14, n + 30), np.float32)
    box[3 : 3 + n, 11 : 11 + n, 25 : 25 + n] = fine
    rng = np.random.default_rng(1)
    noisy = box + 0.3 + rng.normal(0, 0.01, box.shape).astype(np.float32)
    t = T.template_from_map(noisy, 5.0, 10.0, "dumbbell_map", normalize=False)
    check_contract(t)
    ref = T.builtin_template("dumbbell", 10.0)
    assert corr(t.density, ref.density) > 0.98
    # mass is preserved by the resampling (background and the 2-sigma noise floor removed)
    assert abs(t.density.sum() * 8 / fine.sum() - 1) < 0.05
    assert abs(t.diameter_nm - ref.diameter_nm) < 1.0


def test_map_upsampling_preserves_mass_and_normalize_scale():
    coarse = T.builtin_template("tetramer", 10.0).density
    t = T.template_from_map(coarse, 10.0, 5.0, "up", normalize=False)
    check_contract(t)
    assert abs(t.density.sum() / 8 / coarse.sum() - 1) < 0.01
    # normalisation makes the scale independent of the map's units
    a = T.template_from_map(coarse * 37.0, 10.0, 10.0, "a")
    b = T.template_from_map(coarse, 10.0, 10.0, "b")
    assert np.allclose(a.density, b.density, rtol=1e-4, atol=1e-6)


def test_map_file_voxel_size_from_header_or_caller(tmp_path):
    d = T.builtin_template("blob3", 8.0).density
    no_vs = write_mrc(tmp_path / "novs.mrc", d, None)
    with pytest.raises(InputError, match="novs.mrc.*no voxel size"):
        T.load_template(str(no_vs), 10.0, cache_dir=tmp_path / "c")
    t1 = T.load_template(str(no_vs), 10.0, cache_dir=tmp_path / "c", map_voxel_size_a=8.0)
    with_vs = write_mrc(tmp_path / "vs.map", d, 8.0)
    t2 = T.load_template(str(with_vs), 10.0, cache_dir=tmp_path / "c")
    check_contract(t2)
    assert t2.name == "vs" and t2.source == str(with_vs)
    assert np.allclose(t1.density, t2.density)
    ref = T.builtin_template("blob3", 10.0)
    assert corr(t2.density, ref.density) > 0.97


def test_real_maps(shared_data):
    emd = T.load_template(str(shared("maps", "EMD-3197.map")), 10.0, use_cache=False)
    check_contract(emd)  # a tight 20^3 crop at 11.4 A whose density touches the box edge
    assert 3 < emd.diameter_nm <= 20 * 1.14 * np.sqrt(3) + 1
    for p in sorted(shared("maps", "polnet_templates_10A").glob("*.mrc")):
        t = T.load_template(str(p), 10.0, use_cache=False)
        check_contract(t)
        assert 10 < t.diameter_nm < 45, (p.name, t.diameter_nm)


# --------------------------------------------------------------------------------------------------
# atomic models


def fe0_total(path, assembly="first"):
    """Independent sum of occupancy-weighted f_e(0) over non-H, non-water atoms of the first assembly."""
    import gemmi

    st = gemmi.read_structure(str(path))
    st.setup_entities()
    model = st[0]
    if assembly == "first" and len(st.assemblies):
        model = gemmi.make_assembly(st.assemblies[0], model, gemmi.HowToNameCopiedChain.AddNumber)
    total = 0.0
    for ch in model:
        for res in ch:
            for at in res:
                if at.is_hydrogen() or res.is_water():
                    continue
                total += min(max(at.occ, 0.0), 1.0) * sum(at.element.c4322.a)
    return total


def test_protein_unit_constant_matches_gemmi_tables():
    total = sum(n * T.atoms._fe0(el) for el, n in T.PROTEIN_RESIDUE.items())
    assert T.PROTEIN_FE0_PER_A3 == pytest.approx(total / T.PROTEIN_RESIDUE_VOLUME_A3, rel=1e-6)
    assert T.atoms._fe0("C") == pytest.approx(2.5088, abs=1e-3)  # c4322 carbon: sum of the five a_i


@pytest.mark.parametrize("pdb", SHREC_PDBS)
def test_shrec_pdbs_give_sane_templates(pdb):
    path = shared("pdb", f"{pdb}.pdb")
    t = T.template_from_atoms(path, 10.0)
    check_contract(t)
    assert t.name == pdb and t.source == str(path)
    # SHREC 2021 classes span ~4 nm (3qm1) to ~25 nm; densities are ~1 protein unit at 10 A
    assert 4.0 < t.diameter_nm < 25.0, t.diameter_nm
    assert 0.8 < t.density.max() < 1.6
    # the conversion is linear and mass-preserving: sum * voxel volume * PROTEIN_FE0_PER_A3 = sum f_e(0)
    mass = t.density.sum(dtype=np.float64) * 1000.0 * T.PROTEIN_FE0_PER_A3
    assert abs(mass / fe0_total(path) - 1) < 0.01


def test_atoms_scale_with_voxel_size_and_resolution():
    path = shared("pdb", "3qm1.pdb")
    a = T.template_from_atoms(path, 10.0)
    b = T.template_from_atoms(path, 4.0)
    check_contract(b)
    assert abs(a.density.sum() * 1000 / (b.density.sum() * 64) - 1) < 0.01
    assert abs(a.diameter_nm - b.diameter_nm) < 1.0
    blurred = T.template_from_atoms(path, 4.0, resolution_a=20.0)
    check_contract(blurred)
    assert abs(blurred.density.sum() / b.density.sum() - 1) < 0.01
    assert blurred.density.max() < 0.8 * b.density.max()
    assert blurred.box_size > b.box_size


def test_mmcif_and_gzip_give_the_same_template(tmp_path):
    import gemmi

    src = shared("pdb", "3qm1.pdb")
    st = gemmi.read_structure(str(src))
    st.setup_entities()
    cif = tmp_path / "3qm1.cif"
    st.make_mmcif_document().write_file(str(cif))
    gz = tmp_path / "copy.pdb.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    ref = T.template_from_atoms(src, 10.0)
    for p in (cif, gz):
        t = T.load_template(str(p), 10.0, cache_dir=tmp_path / "cache")
        assert np.allclose(t.density, ref.density, atol=1e-5), p
    assert T.load_template(str(gz), 10.0, cache_dir=tmp_path / "cache").name == "copy"


def test_assembly_option():
    path = shared("pdb", "1oel.pdb")
    full = T.template_from_atoms(path, 12.0)  # first biological assembly: both GroEL rings
    ring = T.template_from_atoms(path, 12.0, assembly=None)  # deposited chains: one ring
    assert abs(full.density.sum() / ring.density.sum() - 2) < 0.02
    with pytest.raises(InputError, match="1oel.pdb.*no biological assembly '7'"):
        T.template_from_atoms(path, 12.0, assembly="7")


def test_groel_model_matches_emdb_map():
    """1oel (GroEL 14-mer assembly) vs EMD-1997 (2.02 A), both at 10 A, centred on their centres of mass.

    The map is not in the model's frame: it is rotated about the shared 7-fold axis (z in both), so the
    model is turned about z in 1-degree steps over one seventh of a turn (and flipped) and the best
    correlation is kept.
    """
    from scipy.ndimage import rotate

    emd = T.load_template(str(shared("maps", "EMD-1997.map")), 10.0, use_cache=False)
    model = T.template_from_atoms(shared("pdb", "1oel.pdb"), 10.0)
    best = -1.0
    for flip in (False, True):
        m = model.density[::-1] if flip else model.density
        for ang in np.arange(0.0, 360.0 / 7, 1.0):
            r = rotate(m, ang, axes=(1, 2), reshape=False, order=1)
            best = max(best, corr(emd.density, r))
    print(f"1oel vs EMD-1997 at 10 A: correlation {best:.3f}")
    assert best > 0.8
    # both sources land on the same density scale (same molecule: interior mass within 25 %)
    assert 0.75 < emd.density.sum() / model.density.sum() < 1.25


def test_map_and_model_share_units():
    # A model rendered at 2 A and read back as a map gets (almost) the model's own scale.
    path = shared("pdb", "1oel.pdb")
    fine = T.template_from_atoms(path, 2.0)
    as_map = T.template_from_map(fine.density, 2.0, 10.0, "m")
    model = T.template_from_atoms(path, 10.0)
    assert abs(as_map.density.sum() / model.density.sum() - 1) < 0.1
    assert corr(as_map.density, model.density) > 0.99


# --------------------------------------------------------------------------------------------------
# cache


def test_second_load_served_from_cache(tmp_path, monkeypatch):
    path = shared("pdb", "3qm1.pdb")
    cache = tmp_path / "cache"
    first = T.load_template(str(path), 10.0, cache_dir=cache)
    files = list(cache.glob("*.mrc"))
    assert len(files) == 1 and f"-v{T.CACHE_VERSION}-" in files[0].name

    def boom(*a, **k):
        raise AssertionError("converter called although the template is cached")

    monkeypatch.setattr(T.atoms, "template_from_atoms", boom)  # what load_template calls
    monkeypatch.setattr(T.maps, "template_from_map", boom)
    second = T.load_template(str(path), 10.0, cache_dir=cache)
    assert np.array_equal(first.density, second.density)
    assert second.diameter_nm == pytest.approx(first.diameter_nm)
    assert second.voxel_size_a == 10.0 and second.source == str(path)
    # another voxel size or option is another key: not served from the cache
    with pytest.raises(AssertionError, match="converter called"):
        T.load_template(str(path), 12.0, cache_dir=cache)
    with pytest.raises(AssertionError, match="converter called"):
        T.load_template(str(path), 10.0, cache_dir=cache, resolution_a=20.0)


def test_map_cache_and_corrupt_cache_entry(tmp_path):
    d = T.builtin_template("ring", 6.0).density
    src = write_mrc(tmp_path / "ring.mrc", d, 6.0)
    cache = tmp_path / "cache"
    a = T.load_template(str(src), 10.0, cache_dir=cache)
    (entry,) = cache.glob("*.mrc")
    entry.write_bytes(b"garbage")  # a corrupt entry is recomputed, not an error
    b = T.load_template(str(src), 10.0, cache_dir=cache)
    assert np.array_equal(a.density, b.density)
    # a changed source file has another sha256: new entry
    write_mrc(src, d * 2 + 0.0, 6.0)
    T.load_template(str(src), 10.0, cache_dir=cache, normalize=False)
    assert len(list(cache.glob("*.mrc"))) == 2


def test_cache_key_is_the_files_sha256(tmp_path):
    from faket.formats.mrc import sha256sum

    src = write_mrc(tmp_path / "ring.mrc", T.builtin_template("ring", 6.0).density, 6.0)
    cache = tmp_path / "cache"
    T.load_template(str(src), 10.0, cache_dir=cache)
    (entry,) = cache.glob("*.mrc")
    assert entry.name.startswith(sha256sum(src)[:16] + "-10A-v")
    assert T.cache._sha256(src) == sha256sum(src)
    with pytest.raises(InputError, match="cannot read template file"):
        T.cache._sha256(tmp_path)  # a folder: one clear error


def test_split_modules_keep_the_public_paths():
    import importlib

    homes = {
        "base": ["Template", "fit_box", "diameter_nm", "centre_of_mass"],
        "shapes": ["BUILTIN_NAMES", "BUILTIN_INFO", "builtin_template"],
        "maps": ["template_from_map", "resample_volume", "subtract_background", "MAP_INTERIOR_LEVEL"],
        "atoms": ["template_from_atoms", "PROTEIN_FE0_PER_A3"],
        "cache": ["CACHE_VERSION", "default_cache_dir"],
        "load": ["load_template"],
    }
    assert sorted(n for v in homes.values() for n in v) == sorted(T.__all__)
    for mod, names in homes.items():
        m = importlib.import_module(f"faket.layout.templates.{mod}")
        for n in names:
            assert getattr(T, n) is getattr(m, n), n


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FAKET_CACHE", str(tmp_path / "fc"))
    assert T.default_cache_dir() == tmp_path / "fc" / "templates"
    monkeypatch.delenv("FAKET_CACHE")
    assert T.default_cache_dir() == Path.home() / ".cache" / "faket" / "templates"


# --------------------------------------------------------------------------------------------------
# bad input


def test_bad_template_files(tmp_path):
    c = tmp_path / "cache"
    cases = {
        "missing.pdb": (None, r"missing.pdb: template file not found"),
        "missing.mrc": (None, r"missing.mrc: template file not found"),
        "corrupt.mrc": (b"this is not an MRC file" * 20, r"corrupt.mrc: .*(not a valid|corrupt)"),
        "empty.pdb": (b"HEADER    EMPTY\nEND\n", r"empty.pdb: atomic model has no atoms"),
        "garbage.cif": (b"\x00\x01 not a cif at all {{{\n", r"garbage.cif: "),
        "notes.txt": (b"hello", r"notes.txt: unknown template file type '.txt'"),
    }
    for fname, (content, pattern) in cases.items():
        p = tmp_path / fname
        if content is not None:
            p.write_bytes(content)
        with pytest.raises(InputError, match=pattern) as exc:
            T.load_template(str(p), 10.0, cache_dir=c)
        assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match="folder"):
        (tmp_path / "d.pdb").mkdir()
        T.load_template(str(tmp_path / "d.pdb"), 10.0, cache_dir=c)
    empty_map = write_mrc(tmp_path / "zero.mrc", np.zeros((8, 8, 8)), 5.0)
    with pytest.raises(InputError, match="zero.mrc: density map is empty"):
        T.load_template(str(empty_map), 10.0, cache_dir=c)
    with pytest.raises(InputError, match="map voxel size"):
        T.template_from_map(np.ones((5, 5, 5)), 0.0, 10.0, "x", "x.mrc")
