"""The data manifest: every external input of a run, with where it lives and its sha256.

``data_manifest.csv`` has the columns ``name,kind,path_or_url,sha256,voxel_size_a,angles_file,licence,notes,pixel_size_a``
(``pixel_size_a`` is optional: manifests without it, and rows that leave it out, still read):

- ``name``: how configs refer to the entry (letters, digits, ``_ . -``), unique;
- ``kind``: ``tiltseries`` (needs angles: ``angles_file`` or an ``X.tlt`` beside it), ``micrograph`` (one
  2-D image, or a stack whose middle image is used), ``tomogram`` (a reconstructed volume; the workflow
  projects it at the content's angles), ``dataset`` (a folder or archive, e.g. SHREC 2021), ``map``,
  ``template``, ``physics`` (made by ``faket reference``; no file);
- ``path_or_url``: a local path, relative to the manifest's folder unless absolute, or an ``http(s)://`` /
  ``ftp://`` URL of an entry that is not downloaded yet (download it, then add a local entry with
  ``faket manifest add``);
- ``sha256``: hex digest of the local file (empty only for URL and physics entries);
- ``voxel_size_a`` (empty: unknown), ``angles_file`` (relative like the path), ``licence``, ``notes``;
- ``pixel_size_a``: the pixel size in Angstrom of a reference's images (a tomogram's voxel size), used when the
  file's header has none: the workflow passes it as ``--reference-pixel-size`` / ``--style-pixel-size``.

Reading, validating and checking live here; the command line is ``faket manifest``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from faket.errors import InputError

COLUMNS = ["name", "kind", "path_or_url", "sha256", "voxel_size_a", "angles_file", "licence", "notes", "pixel_size_a"]
_OPTIONAL = 1  # trailing optional columns (pixel_size_a)
KINDS = ["tiltseries", "micrograph", "tomogram", "dataset", "map", "template", "physics"]
STAGED_KINDS = ["tiltseries", "micrograph", "tomogram"]  # kinds `faket manifest stage` writes as a reference
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_URL = re.compile(r"^(https?|ftp)://", re.IGNORECASE)

__all__ = [
    "COLUMNS",
    "KINDS",
    "STAGED_KINDS",
    "Entry",
    "parse_manifest",
    "format_manifest",
    "read_manifest",
    "check_entry",
    "select",
    "ManifestProblem",
]


@dataclass
class Entry:
    name: str
    kind: str
    path_or_url: str
    sha256: str = ""
    voxel_size_a: float | None = None
    angles_file: str = ""
    licence: str = ""
    notes: str = ""
    pixel_size_a: float | None = None
    line: int = 0  # line number in the manifest (for messages)

    @property
    def is_url(self) -> bool:
        return bool(_URL.match(self.path_or_url))

    @property
    def is_local(self) -> bool:
        return bool(self.path_or_url) and not self.is_url

    def resolve(self, root: str | os.PathLike) -> Path | None:
        """The local file (``None`` for URL and physics entries)."""
        if not self.is_local:
            return None
        p = Path(self.path_or_url)
        return p if p.is_absolute() else Path(root) / p

    def resolve_angles(self, root: str | os.PathLike) -> Path | None:
        if not self.angles_file:
            return None
        p = Path(self.angles_file)
        return p if p.is_absolute() else Path(root) / p

    def row(self) -> list[str]:
        vs = "" if self.voxel_size_a is None else f"{self.voxel_size_a:g}"
        ps = "" if self.pixel_size_a is None else f"{self.pixel_size_a:g}"
        return [self.name, self.kind, self.path_or_url, self.sha256, vs, self.angles_file, self.licence, self.notes, ps]


def parse_manifest(text: str, source: str = "data_manifest.csv") -> list[Entry]:
    """Parse manifest CSV text; every problem raises :class:`InputError` naming the line."""
    reader = csv.reader(io.StringIO(text))
    rows = [(i, r) for i, r in enumerate(reader, start=1)]
    rows = [
        (i, r) for i, r in rows if r and not (len(r) == 1 and not r[0].strip()) and not r[0].lstrip().startswith("#")
    ]
    if not rows:
        raise InputError(f"{source}: empty manifest (expected a header {','.join(COLUMNS)})")
    hline, header = rows[0]
    header = [h.strip() for h in header]
    if header != COLUMNS and header != COLUMNS[:-_OPTIONAL]:
        raise InputError(f"{source}: line {hline}: header must be {','.join(COLUMNS)}, got {','.join(header)}")
    out: list[Entry] = []
    seen: dict[str, int] = {}
    for i, r in rows[1:]:
        if len(r) not in (len(header), len(COLUMNS) - _OPTIONAL):
            raise InputError(f"{source}: line {i}: {len(r)} fields, expected {len(header)}")
        d = dict(zip(COLUMNS, (c.strip() for c in r)))
        d.setdefault("pixel_size_a", "")
        name = d["name"]
        if not _NAME.match(name):
            raise InputError(f"{source}: line {i}: bad name {name!r} (letters, digits, _ . -)")
        if name in seen:
            raise InputError(f"{source}: line {i}: name {name!r} already used on line {seen[name]}")
        seen[name] = i
        if d["kind"] not in KINDS:
            raise InputError(f"{source}: line {i}: {name}: kind {d['kind']!r} is not one of {', '.join(KINDS)}")
        sha = d["sha256"].lower()
        if sha and not _SHA.match(sha):
            raise InputError(f"{source}: line {i}: {name}: sha256 must be 64 hex digits")
        vs, ps = (_positive(d[k], f"{source}: line {i}: {name}: {k}") for k in ("voxel_size_a", "pixel_size_a"))
        e = Entry(
            name=name,
            kind=d["kind"],
            path_or_url=d["path_or_url"],
            sha256=sha,
            voxel_size_a=vs,
            angles_file=d["angles_file"],
            licence=d["licence"],
            notes=d["notes"],
            pixel_size_a=ps,
            line=i,
        )
        if e.kind != "physics" and not e.path_or_url:
            raise InputError(f"{source}: line {i}: {name}: path_or_url is empty")
        if e.is_local and e.kind != "physics" and not sha:
            raise InputError(
                f"{source}: line {i}: {name}: a local entry needs its sha256 (faket manifest add computes it)"
            )
        out.append(e)
    return out


def format_manifest(entries: Iterable[Entry]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for e in entries:
        w.writerow(e.row())
    return buf.getvalue()


def _positive(text: str, where: str) -> float | None:
    """A manifest's optional positive number: None when empty, else the value (an InputError otherwise)."""
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{where} {text!r} is not a number") from None
    if not v > 0:
        raise InputError(f"{where} must be positive")
    return v


def read_manifest(path: str | os.PathLike) -> list[Entry]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: data manifest not found")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read data manifest ({exc})") from None
    return parse_manifest(text, source=str(p))


def select(entries: list[Entry], names: Iterable[str] | None, source: str = "data_manifest.csv") -> list[Entry]:
    """Entries named in ``names`` (all when ``None``), in the order asked; unknown names raise."""
    if names is None:
        return list(entries)
    by = {e.name: e for e in entries}
    out = []
    for n in names:
        if n not in by:
            raise InputError(f"{source}: no entry named {n!r} (known: {', '.join(sorted(by))})")
        out.append(by[n])
    return out


@dataclass
class ManifestProblem:
    name: str
    problem: str

    def __str__(self) -> str:
        return f"{self.name}: {self.problem}"


def check_entry(
    e: Entry,
    root: str | os.PathLike,
    *,
    sha_fn: Callable[[Path], str] | None = None,
    source: str = "data_manifest.csv",
    require_local: bool = True,
) -> ManifestProblem | None:
    """``None`` when the entry's file exists and its sha256 matches, else the problem.

    URL entries are "not downloaded" (a problem only with ``require_local``); physics entries have no file.
    """
    if sha_fn is None:
        from faket.formats.mrc import sha256sum as sha_fn  # noqa: N813
    if e.kind == "physics":
        return None
    if e.is_url:
        if not require_local:
            return None
        return ManifestProblem(
            e.name,
            f"not downloaded ({e.path_or_url}); download it and add a local "
            f"entry with `faket manifest add` ({source} line {e.line})",
        )
    p = e.resolve(root)
    if not p.exists():
        return ManifestProblem(e.name, f"file {p} is missing ({source} line {e.line})")
    if p.is_dir():
        return ManifestProblem(
            e.name, f"{p} is a folder; the manifest checksums files (list an archive, or one entry per file)"
        )
    got = sha_fn(p)
    if got != e.sha256:
        return ManifestProblem(e.name, f"file {p} was altered: sha256 {got} != {e.sha256} ({source} line {e.line})")
    a = e.resolve_angles(root)
    if a is not None and not a.is_file():
        return ManifestProblem(e.name, f"angles file {a} is missing ({source} line {e.line})")
    return None
