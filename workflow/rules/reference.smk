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


rule stage_reference:
    input:
        manifest=config["manifest"],
    output:
        tilts="results/references/{ref}/staged.mrc",
    log:
        "logs/references/{ref}/stage.log",
    conda:
        "../envs/faket.yaml"
    params:
        name=lambda wildcards: ref_of(wildcards)["name"],
    shell:
        "faket manifest stage {input.manifest} {params.name} -o {output.tilts} --quiet > {log} 2>&1"


rule stage_reference_volume:
    input:
        manifest=config["manifest"],
    output:
        volume="results/references/{ref}/staged_volume.mrc",
    log:
        "logs/references/{ref}/stage_volume.log",
    conda:
        "../envs/faket.yaml"
    params:
        name=lambda wildcards: ref_of(wildcards)["name"],
    shell:
        "faket manifest stage {input.manifest} {params.name} -o {output.volume} --quiet > {log} 2>&1"


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
