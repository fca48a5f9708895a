# Realism of a tomogram's tilt-series against its real reference (faket realism; docs/realism.md), when
# qc.realism is true and the reference is a real tilt-series or micrograph. The noise is fitted on every
# reference tilt, so these scores are in-sample (--holdout none).


rule realism:
    input:
        unpack(realism_inputs),
    output:
        json="results/{tomo}/qc/realism/realism.json",
        md=report(
            "results/{tomo}/qc/realism/realism.md",
            caption="../report/realism.rst",
            category="QC",
            subcategory="{tomo}",
            labels={"tomogram": "{tomo}", "figure": "realism table"},
        ),
        png=report(
            "results/{tomo}/qc/realism/realism.png",
            caption="../report/realism.rst",
            category="QC",
            subcategory="{tomo}",
            labels={"tomogram": "{tomo}", "figure": "realism"},
        ),
    log:
        "logs/{tomo}/realism.log",
    conda:
        "../envs/faket.yaml"
    threads: 1
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.json),
        opts=realism_opts,
        seed=lambda wildcards: tomo_seed(wildcards.tomo),
    shell:
        "faket realism {params.opts} -o {params.outdir} --seed {params.seed} "
        "--threads {threads} --quiet > {log} 2>&1"
