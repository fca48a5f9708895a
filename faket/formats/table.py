"""The particle table faket passes between steps: its columns, types and checks (one definition)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faket.errors import InputError

COLUMNS = ("particle_id", "class_id", "class_name", "x", "y", "z", "rot", "tilt", "psi")


_INT_COLS = ("particle_id", "class_id")


_FLOAT_COLS = ("x", "y", "z", "rot", "tilt", "psi")


def empty_particles() -> pd.DataFrame:
    """A table with the standard columns and no rows."""
    return _typed(pd.DataFrame({c: [] for c in COLUMNS}))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "particle_id": np.asarray(df["particle_id"], dtype=np.int64),
            "class_id": np.asarray(df["class_id"], dtype=np.int64),
            "class_name": np.asarray(df["class_name"], dtype=object).astype(str)
            if len(df)
            else np.asarray([], dtype=object),
            **{c: np.asarray(df[c], dtype=np.float64) for c in _FLOAT_COLS},
        }
    )
    return out[list(COLUMNS)].reset_index(drop=True)


def check_particles(df: pd.DataFrame, source: str = "particles") -> pd.DataFrame:
    """Validate a table (columns, types, unique ids >= 1, one name per class id, finite numbers).

    Returns a copy with exactly :data:`COLUMNS` in order and canonical dtypes.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)}")
    try:
        out = _typed(df)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{source}: bad value ({exc})") from None
    if not np.isfinite(out[list(_FLOAT_COLS)].to_numpy()).all():
        raise InputError(f"{source}: x, y, z, rot, tilt, psi must be finite numbers")
    if len(out):
        if (out["particle_id"] < 1).any():
            raise InputError(f"{source}: particle_id must be >= 1")
        if out["particle_id"].max() > 2**31 - 1:
            raise InputError(f"{source}: particle_id must fit in int32")
        if (out["class_id"] < 1).any():
            raise InputError(f"{source}: class_id must be >= 1 (0 is background)")
        if out["class_id"].max() > 32767:
            raise InputError(f"{source}: class_id must be <= 32767")
        dup = out["particle_id"][out["particle_id"].duplicated()]
        if len(dup):
            raise InputError(f"{source}: particle_id {int(dup.iloc[0])} appears more than once")
        names = out.groupby("class_id")["class_name"].nunique()
        if (names > 1).any():
            cid = int(names[names > 1].index[0])
            got = sorted(set(out.loc[out["class_id"] == cid, "class_name"]))
            raise InputError(f"{source}: class_id {cid} has several names: {', '.join(got)}")
        ids = out.groupby("class_name")["class_id"].nunique()
        if (ids > 1).any():
            name = str(ids[ids > 1].index[0])
            raise InputError(f"{source}: class {name!r} has several class_ids")
        if (out["class_name"].str.strip() == "").any():
            raise InputError(f"{source}: empty class_name")
    return out
