"""The FakET paper's scale, step by step as the workflow runs it: wall, CPU time, peak memory and disk per step.

    .venv/bin/python bench/paper_scale.py                          # config/paper-scale.yaml as it is (1.0)
    .venv/bin/python bench/paper_scale.py --scale 0.25,0.5         # proxies, and a fit extrapolated to 1.0
    .venv/bin/python bench/paper_scale.py --scale 0.5 --keep DIR   # keep the outputs in DIR

What runs: ``snakemake --configfile config/paper-scale.yaml`` (one tomogram: layout, the physics reference's
layout and tilt-series, projection, noise, style transfer, reconstruction of each modality, labels, QC), one job
at a time (``--resources serial=1``, so every step owns the machine and its figures are its own), in a fresh
folder; then ``faket style --preset paper`` in fp32 and bf16 (``--extra-style``) on the workflow's inputs (the
workflow styles with the preset its weights imply, in one precision). Every ``faket`` process goes through a
shim on ``PATH`` that waits for it with ``os.wait4``: wall time, CPU time (user + system), peak resident
memory (``ru_maxrss``, the process's own) and the disk its outputs take (the ``-o`` file with its sidecars,
or the ``-o`` folder; temporary outputs the workflow deletes count 0). ``--no-style``: the volume steps alone
(modalities [noisy]), a quick proxy.

``--scale S`` shrinks every length by S (box 360*S x 1024*S x 1024*S, tilts 1024*S square, particle counts
by S^3, the same angles). With two or more scales, each step's time and memory are fitted as
``a + b * size`` (size = voxels, or tilt pixels for noise / style) and extrapolated to the paper's scale:
estimates, marked as such. The machine may be shared: the load average is printed with every step.

Output: a Markdown table on stdout and, with ``--out DIR``, ``paper_scale.json`` + ``paper_scale.md`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER_BOX = (360, 1024, 1024)

# the shim: runs `python -m faket ARGS`, waits with wait4 and appends one JSON line to $FAKET_BENCH_LOG
SHIM = r"""#!{python}
import json, os, subprocess, sys, time
t0 = time.time()
p = subprocess.Popen([{python!r}, "-m", "faket", *sys.argv[1:]])
_, status, ru = os.wait4(p.pid, 0)
rc = os.waitstatus_to_exitcode(status)
with open(os.environ["FAKET_BENCH_LOG"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "start": t0, "wall": time.time() - t0,
                        "cpu": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss, "rc": rc,
                        "cwd": os.getcwd(), "load": os.getloadavg()}}) + "\n")
sys.exit(rc)
"""


def load() -> str:
    return "%.1f %.1f %.1f" % os.getloadavg()


def du(path: Path) -> int:
    """Bytes on disk of a file or a folder (recursively)."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def outputs_of(argv: list[str], cwd: Path) -> list[Path]:
    """The output paths of one faket command: -o/--output/--content-out (+ sidecars beside a file)."""
    outs = []
    for i, tok in enumerate(argv):
        val = None
        if tok in ("-o", "--output", "--content-out") and i + 1 < len(argv):
            val = argv[i + 1]
        elif tok.startswith(("--output=", "--content-out=")):
            val = tok.split("=", 1)[1]
        if val:
            p = Path(val) if Path(val).is_absolute() else cwd / val
            outs.append(p)
            if p.suffix:
                outs += [p.with_suffix(s) for s in (".json", ".tlt") if p.with_suffix(s) != p]
    return outs


def step_name(argv: list[str]) -> str:
    """``layout paper_000``, ``style fp32``, ``reconstruct tomogram_bin2`` ... from a faket command line."""
    cmd = argv[0] if argv else "?"
    out = next((argv[i + 1] for i, t in enumerate(argv[:-1]) if t in ("-o", "--output")), "")
    p = Path(out)
    if cmd == "layout":
        return "layout (reference)" if "references" in p.parts else "layout"
    if cmd == "style":
        prec = next((argv[i + 1] for i, t in enumerate(argv[:-1]) if t == "--precision"), "fp32")
        preset = next((argv[i + 1] for i, t in enumerate(argv[:-1]) if t == "--preset"), "")
        return f"style {preset + ' ' if preset else ''}{prec}"
    if cmd == "reconstruct":
        return f"reconstruct {p.stem}"
    if cmd == "reference":
        return "reference (physics)"
    return cmd


def scaled_spec(scale: float, dst: Path) -> tuple[int, int, int]:
    """config/paper-scale-layout.yaml with every length scaled by ``scale`` and counts by scale^3."""
    import yaml

    spec = yaml.safe_load((ROOT / "config" / "paper-scale-layout.yaml").read_text())
    box = [max(32, int(round(v * scale))) for v in spec["box"]]
    box[1:] = [v // 8 * 8 for v in box[1:]]  # tilts divisible by the style's pooling
    spec["box"] = box
    spec["slab_thickness"] = max(8, int(round(spec["slab_thickness"] * scale)))
    for c in spec.get("classes", []):
        c["count"] = max(1, int(round(c["count"] * scale**3)))
    for k in ("vesicles", "fiducials"):
        if k in spec:
            spec[k]["count"] = max(1, int(round(spec[k]["count"] * scale**3)))
            # a proxy's thin slab holds no 60 nm vesicle: leave them out there
            if spec[k].get("diameter_nm", 0) * 10 / spec.get("voxel_size", 10) * 1.5 > spec["slab_thickness"]:
                del spec[k]
    dst.write_text(yaml.safe_dump(spec, sort_keys=False))
    return tuple(box)


def run_scale(scale: float, work: Path, threads: int, extra_style: list[str], log, *, style: bool = True) -> list[dict]:
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    bindir = work / ".bench-bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / "faket"
    shim.write_text(SHIM.format(python=sys.executable))
    shim.chmod(0o755)
    jlog = work / "steps.jsonl"
    jlog.unlink(missing_ok=True)
    box = scaled_spec(scale, work / "layout-spec.yaml")
    cfg = yaml.safe_load((ROOT / "config" / "paper-scale.yaml").read_text())
    cfg["layout"]["spec"] = str(work / "layout-spec.yaml")
    cfg["manifest"] = str(ROOT / "data_manifest.csv")
    if not style:  # the volume steps alone: the NOISY modality (no style transfer)
        cfg["modalities"] = ["noisy"]
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = dict(
        os.environ,
        PATH=f"{bindir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}" + os.environ.get("PATH", ""),
        FAKET_BENCH_LOG=str(jlog),
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    snake = [
        str(Path(sys.executable).parent / "snakemake"),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "-d",
        str(work),
        "--configfile",
        str(work / "config.yaml"),
        "--cores",
        str(threads),
        "--resources",
        "serial=1",
        "--default-resources",
        "serial=1",
        "--quiet",
        "all",
    ]
    print(
        f"\n== scale {scale:g}: box {box[0]} x {box[1]} x {box[2]}, workflow in {work} (load {load()}) ==",
        file=log,
        flush=True,
    )
    t0 = time.time()
    r = subprocess.run(snake, env=env, cwd=work, capture_output=True, text=True)
    if r.returncode != 0:
        logs = sorted((work / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)
        tail = logs[-1].read_text()[-2000:] if logs else ""
        raise SystemExit(f"snakemake failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}\n{tail}")
    wf_wall = time.time() - t0
    # the paper's own setting (one Adam step of 0.15 with the content loss) in fp32 and bf16 on the workflow's
    # inputs: the workflow styles with its configured preset and one precision
    style = [json.loads(x) for x in jlog.read_text().splitlines() if json.loads(x)["argv"][:1] == ["style"]]
    for prec in extra_style if style else []:
        argv = list(style[0]["argv"])
        for opt in ("--precision", "--preset", "--iterations", "--style-cache"):
            if opt in argv:
                i = argv.index(opt)
                del argv[i : i + 2]
        out = Path(style[0]["cwd"]) / "results" / "paper_style" / f"faket_paper_{prec}.mrc"
        out.parent.mkdir(parents=True, exist_ok=True)
        argv[argv.index("-o") + 1] = str(out)
        argv += ["--preset", "paper", "--precision", prec]
        subprocess.run([str(shim), *argv], env=env, cwd=style[0]["cwd"], check=True)
    rows = []
    for line in jlog.read_text().splitlines():
        e = json.loads(line)
        cwd = Path(e["cwd"])
        outs = outputs_of(e["argv"], cwd)
        e.update(
            step=step_name(e["argv"]), scale=scale, box=list(box), disk_bytes=sum(du(p) for p in dict.fromkeys(outs))
        )
        rows.append(e)
        print(
            f"  {e['step']:28s} wall {e['wall']:8.1f} s  cpu {e['cpu']:8.1f} s  peak {e['maxrss_kb'] / 1024:8.0f} MB"
            f"  disk {e['disk_bytes'] / 2**20:8.0f} MB  (load {' '.join(f'{v:.1f}' for v in e['load'])})",
            file=log,
            flush=True,
        )
    print(f"  workflow total {wf_wall:.0f} s; folder {du(work / 'results') / 2**30:.2f} GB", file=log, flush=True)
    return rows


def grows_with_pixels(step: str) -> bool:
    """Steps whose cost grows with the tilts' pixels (scale^2); the others with the volume (scale^3)."""
    return step.startswith(("noise", "style", "stack"))


def extrapolate(rows: list[dict], scales: list[float]) -> list[dict]:
    """Per step, fit a + b * size over the scales (size ~ scale^3 for volume steps, scale^2 for tilt steps)
    and evaluate at 1.0: wall, cpu, peak memory, disk."""
    import numpy as np

    out = []
    steps = list(dict.fromkeys(r["step"] for r in rows))
    for s in steps:
        pts = sorted((r["scale"], r) for r in rows if r["step"] == s)
        if len({p[0] for p in pts}) < 2:
            continue
        k = 2 if grows_with_pixels(s) else 3
        x = np.array([p[0] ** k for p in pts])
        est = {"step": s, "scale": 1.0, "estimated": True, "grows_with": f"scale^{k}"}
        for key in ("wall", "cpu", "maxrss_kb", "disk_bytes"):
            y = np.array([float(p[1][key]) for p in pts])
            b, a = np.polyfit(x, y, 1)
            est[key] = float(a + b * 1.0)
        out.append(est)
    return out


def markdown(rows: list[dict]) -> str:
    lines = [
        "| scale (box) | step | wall s | CPU s | CPU/wall | peak RSS MB | disk MB | load at start |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        box = "x".join(str(v) for v in r.get("box", ())) or "estimate"
        tag = f"{r['scale']:g} ({box})" + (" **estimated**" if r.get("estimated") else "")
        ld = " ".join(f"{v:.1f}" for v in r["load"]) if "load" in r else "-"
        lines.append(
            f"| {tag} | {r['step']} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['cpu'] / max(r['wall'], 1e-9):.2f} "
            f"| {r['maxrss_kb'] / 1024:.0f} | {r['disk_bytes'] / 2**20:.0f} | {ld} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="1.0", help="comma list of length scales (default 1.0: the paper's)")
    ap.add_argument("--threads", type=int, default=2, help="snakemake --cores (default 2)")
    ap.add_argument(
        "--extra-style",
        default="fp32,bf16",
        metavar="P,...",
        help="after the workflow, `faket style --preset paper` in these precisions on its inputs "
        "(default fp32,bf16; '' for none)",
    )
    ap.add_argument(
        "--no-style",
        action="store_true",
        help="the volume steps alone (modalities: [noisy], no style transfer): a quick proxy",
    )
    ap.add_argument("--keep", metavar="DIR", help="run in DIR and keep the outputs (default: a temporary folder)")
    ap.add_argument("--out", metavar="DIR", help="write paper_scale.json and paper_scale.md here")
    a = ap.parse_args(argv)
    scales = [float(v) for v in a.scale.split(",")]
    print(
        f"# faket at the paper's scale; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{os.cpu_count()} CPUs; load {load()}",
        flush=True,
    )
    rows = []
    base = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="faket-paper-scale-"))
    try:
        for s in scales:
            rows += run_scale(
                s,
                base / f"scale_{s:g}",
                a.threads,
                [p for p in a.extra_style.split(",") if p],
                sys.stdout,
                style=not a.no_style,
            )
            if not a.keep:
                shutil.rmtree(base / f"scale_{s:g}", ignore_errors=True)
    finally:
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)
    est = extrapolate(rows, scales) if len(scales) > 1 else []
    table = markdown(rows + est)
    print("\n" + table)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "paper_scale.json").write_text(json.dumps({"rows": rows, "estimates": est}, indent=1))
        (out / "paper_scale.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
