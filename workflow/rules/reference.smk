# Style / noise references: a physics-based tilt-series (faket reference), or a manifest entry staged
# after its checksum is verified (faket manifest stage); a real tomogram is projected at the content's
# angles (faket project).


rule physics_reference:
    input:
        volume="results/references/{ref}/layout/volume.mrc",
    output:
        tilts="results/references/{ref}/physics.mrc",
        tlt="results/references/{ref}/physics.tlt",
    log:
        "logs/references/{ref}/physics.log",
    conda:
        "../envs/faket.yaml"
    threads: 2
    params:
        angles=config["angles"],
        seed=config["reference"]["physics"]["seed"],
        opts=lambda wildcards: physics_opts(wildcards.ref),
    shell:
        "faket reference {input.volume} -o {output.tilts} --angles {params.angles} {params.opts} "
        "--seed {params.seed} --threads {threads} --quiet > {log} 2>&1"


# staged.mrc: a tilt-series or micrograph; staged_volume.mrc: a tomogram (projected below)
rule stage_reference:
    input:
        manifest=config["manifest"],
    output:
        staged="results/references/{ref}/{stem}.mrc",
    log:
        "logs/references/{ref}/{stem}.log",
    wildcard_constraints:
        stem="staged|staged_volume",
    conda:
        "../envs/faket.yaml"
    params:
        name=lambda wildcards: ref_of(wildcards)["name"],
    shell:
        "faket manifest stage {input.manifest} {params.name} -o {output.staged} --quiet > {log} 2>&1"


rule project_reference:
    input:
        volume="results/references/{ref}/staged_volume.mrc",
    output:
        tilts="results/references/{ref}/projected.mrc",
        tlt="results/references/{ref}/projected.tlt",
    log:
        "logs/references/{ref}/project.log",
    conda:
        "../envs/faket.yaml"
    threads: 2
    params:
        angles=config["angles"],
    shell:
        "faket project {input.volume} -o {output.tilts} --angles {params.angles} "
        "--threads {threads} --quiet > {log} 2>&1"
