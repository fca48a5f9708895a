# Config validation and the rules' input functions (no rules here). Everything is decided in the package
# (faket/workflow/plan.py: tomograms, seeds, references, file names, step options); this file binds the
# plan's methods to the names the rules call.

import copy
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# the faket package of this checkout (the one the rules' environment installs)
sys.path.insert(0, workflow.basedir)
from faket import workflow as fw
from faket.errors import InputError
from faket.workflow.plan import MainPlan

# the rules' `faket` is the installation of the interpreter running snakemake (a venv's bin first on PATH),
# also when the venv is not activated; SLURM jobs inherit this PATH
fw.put_interpreter_first_on_path()

# config validation (schema defaults filled in); fails before any job starts, naming the key
_raw_config = copy.deepcopy(config)
try:
    validate(config, "../schemas/config.schema.yaml")
except WorkflowError:
    _problem = fw.config_problem(
        _raw_config,
        os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml"),
    )
    if _problem is None:
        raise
    raise WorkflowError(_problem) from None

try:
    PLAN = MainPlan(config)
except InputError as _exc:
    raise WorkflowError(str(_exc)) from None

ANGLES = PLAN.angles
N_TILTS = PLAN.n_tilts
TOMOS = PLAN.tomos  # name -> {"seed", "given", "key"}
REFS = PLAN.refs  # ref id -> {"name", "kind", "defocus_um"}
CELLULAR = PLAN.cellular
MANIFEST = PLAN.manifest
BINS = PLAN.bins
MODALITIES = PLAN.modalities
DATASET_CSV = PLAN.dataset_csv  # results/dataset.csv


wildcard_constraints:
    tomo=PLAN.tomo_constraint(),
    ref=PLAN.ref_constraint(),
    chunk=r"\d+-\d+",
    bin=r"\d+",
    modality="noiseless|baseline|noisy",


# the rules' input functions, parameters and file names (faket.workflow.plan.MainPlan)
tomo_seed = PLAN.tomo_seed
draw = PLAN.draw
layout_box = PLAN.layout_box
volume_shape = PLAN.volume_shape
z_range = PLAN.z_range
is_cellular = PLAN.is_cellular
tomo_pattern = PLAN.tomo_pattern
reference_name = PLAN.reference_name
defocus_um = PLAN.defocus_um
reference_id = PLAN.reference_id
reference_tilts = PLAN.reference_tilts
ref_of = PLAN.ref_of
layout_outputs = PLAN.layout_outputs
layout_file = PLAN.layout_file
labels_inputs = PLAN.labels_inputs
labels_opts = PLAN.labels_opts
chunks = PLAN.chunks
chunk_range = PLAN.chunk_range
tomogram_path = PLAN.tomogram_path
labels_outputs = PLAN.labels_outputs
labels_of = PLAN.labels_of
tomograms_of = PLAN.tomograms_of
final_outputs = PLAN.final_outputs
layout_opts = PLAN.layout_opts
project_opts = PLAN.project_opts
physics_opts = PLAN.physics_opts
noise_opts = PLAN.noise_opts
z_range_opt = PLAN.z_range_opt
reference_pixel_opt = PLAN.reference_pixel_opt
style_opts = PLAN.style_opts
qc_tomogram = PLAN.qc_tomogram
qc_inputs = PLAN.qc_inputs
qc_opts = PLAN.qc_opts
realism_inputs = PLAN.realism_inputs
realism_opts = PLAN.realism_opts
