"""``faket benchmark``: the picker benchmark (docs/picker.md) as one command, a thin wrapper of

    snakemake --cores 2 --configfile=config/benchmark.yaml benchmark

(``--configfile=`` with the equals sign: after a bare ``--configfile`` Snakemake 9 reads every further word,
the target too, as another config file).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from faket.errors import InputError

HELP = "run the picker benchmark: snakemake --cores N --configfile=CONFIG benchmark (docs/picker.md)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Run the picker benchmark through the Snakemake workflow, in the current folder "
        "(results/benchmark/): pickers trained on every modality (physics at the training domain's "
        "settings, physics matched to the test domain, NOISY / BASELINE / FAKET / the offline default "
        "fitted to the test domain's unlabelled tilt-series, NOISELESS), fine-tuned on k annotated "
        "test-domain tomograms, against pickers trained on those k alone; scored on the other "
        "annotated tomograms (or your own, benchmark.test), with paired bootstrap intervals. "
        "Options after -- go to snakemake unchanged."
    )
    p.add_argument(
        "--configfile",
        default="config/benchmark.yaml",
        metavar="YAML",
        help="benchmark configuration (default config/benchmark.yaml; config/benchmark-gpu.yaml for the "
        "paper's scale; config/benchmark-smoke.yaml runs every rule on tiny data in minutes)",
    )
    p.add_argument("--cores", default="2", help="snakemake --cores (default 2)")
    p.add_argument(
        "--snakefile",
        metavar="PATH",
        help="the workflow (default: ./Snakefile, else the one beside the installed faket package)",
    )
    p.add_argument("-n", "--dry-run", action="store_true", help="plan only (snakemake -n)")
    p.add_argument(
        "snakemake_args",
        nargs=argparse.REMAINDER,
        metavar="-- ...",
        help="further snakemake options, e.g. -- --keep-going --workflow-profile workflow/profiles/slurm",
    )


def command(args) -> list[str]:
    """The snakemake command line ``faket benchmark`` runs."""
    cfg = Path(args.configfile)
    if not cfg.is_file():
        raise InputError(f"--configfile {cfg}: not found")
    if args.snakefile:
        snakefile = Path(args.snakefile)
    elif Path("Snakefile").is_file():
        snakefile = Path("Snakefile")
    else:
        snakefile = Path(__file__).resolve().parents[2] / "Snakefile"
    if not snakefile.is_file():
        raise InputError(f"--snakefile {snakefile}: not found (run from the faket checkout or pass --snakefile)")
    exe = Path(sys.executable).parent / "snakemake"
    exe = str(exe) if exe.is_file() else shutil.which("snakemake")
    if not exe:
        raise InputError("snakemake not found: install the 'workflow' extra (pip install 'faket[workflow]')")
    extra = list(args.snakemake_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return [
        exe,
        "-s",
        str(snakefile),
        "--cores",
        str(args.cores),
        f"--configfile={cfg}",
        "benchmark",
        *(["-n"] if args.dry_run else []),
        *extra,
    ]


def job_environment(environ=None) -> dict:
    """The environment snakemake runs in: this installation's ``faket`` first on ``PATH``
    (:func:`faket.workflow.interpreter_path`; the Snakefile does the same for the jobs it starts)."""
    from faket.workflow import interpreter_path

    env = dict(os.environ if environ is None else environ)
    env["PATH"] = interpreter_path(env)
    return env


def run(args) -> int:
    return subprocess.call(command(args), env=job_environment())
