# faket workflow: labelled layouts -> noiseless tilt-series -> noise -> style transfer -> tomograms,
# with labels cropped and binned like the tomograms. Docs: docs/workflow.md.
#   snakemake --cores 2                                   (the embedded default, offline)
#   snakemake --workflow-profile workflow/profiles/slurm  (on a SLURM cluster)
import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/layout.smk"
include: "workflow/rules/project.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/noise.smk"
include: "workflow/rules/style.smk"
include: "workflow/rules/reconstruct.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/realism.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/benchmark.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
