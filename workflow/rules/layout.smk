# Random labelled layouts (faket layout): one per generated tomogram, one per physics reference.


rule layout:
    output:
        **layout_outputs("results/{tomo}/layout", CELLULAR),
    log:
        "logs/{tomo}/layout.log",
    conda:
        "../envs/faket.yaml"
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.volume),
        seed=lambda wildcards: tomo_seed(wildcards.tomo),
        opts=layout_opts(),
    shell:
        "faket layout {params.opts} -o {params.outdir} --seed {params.seed} --tomo-name {wildcards.tomo} "
        "--quiet > {log} 2>&1"


rule reference_layout:
    output:
        volume="results/references/{ref}/layout/volume.mrc",
    log:
        "logs/references/{ref}/layout.log",
    conda:
        "../envs/faket.yaml"
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.volume),
        seed=config["reference"]["physics"]["seed"],
        opts=layout_opts(),
    shell:
        "faket layout {params.opts} -o {params.outdir} --seed {params.seed} --quiet > {log} 2>&1"
