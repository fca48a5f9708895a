# Noiseless projections of each tomogram's volume (faket project).


rule project:
    input:
        volume=lambda wildcards: layout_file(wildcards.tomo, "volume"),
    output:
        tilts="results/{tomo}/tiltseries/noiseless.mrc",
        tlt="results/{tomo}/tiltseries/noiseless.tlt",
    log:
        "logs/{tomo}/project.log",
    conda:
        "../envs/faket.yaml"
    threads: 2
    params:
        angles=config["angles"],
        opts=project_opts(),
    shell:
        "faket project {input.volume} -o {output.tilts} --angles {params.angles} {params.opts} "
        "--threads {threads} --quiet > {log} 2>&1"
