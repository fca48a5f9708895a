# Per-tilt noise fitted to the reference (faket noise): NOISY and CONTENT, and the BASELINE modality
# (one global r and sigma).


rule noise:
    input:
        clean="results/{tomo}/tiltseries/noiseless.mrc",
        reference=lambda wildcards: reference_tilts(wildcards.tomo),
    output:
        noisy="results/{tomo}/tiltseries/noisy.mrc",
        noisy_tlt="results/{tomo}/tiltseries/noisy.tlt",
        content="results/{tomo}/tiltseries/content.mrc",
        content_tlt="results/{tomo}/tiltseries/content.tlt",
    log:
        "logs/{tomo}/noise.log",
    conda:
        "../envs/faket.yaml"
    threads: 1
    params:
        seed=lambda wildcards: tomo_seed(wildcards.tomo),
        opts=lambda wildcards: noise_opts(wildcards.tomo),
        px=lambda wildcards: reference_pixel_opt(
            wildcards.tomo, "--reference-pixel-size"
        ),
    shell:
        "faket noise {input.clean} --reference {input.reference} -o {output.noisy} "
        "--content-out {output.content} {params.opts} {params.px} --seed {params.seed} "
        "--threads {threads} --quiet > {log} 2>&1"


rule baseline:
    input:
        clean="results/{tomo}/tiltseries/noiseless.mrc",
        reference=lambda wildcards: reference_tilts(wildcards.tomo),
    output:
        tilts="results/{tomo}/tiltseries/baseline.mrc",
        tlt="results/{tomo}/tiltseries/baseline.tlt",
    log:
        "logs/{tomo}/baseline.log",
    conda:
        "../envs/faket.yaml"
    threads: 1
    params:
        seed=lambda wildcards: tomo_seed(wildcards.tomo),
        opts=lambda wildcards: noise_opts(wildcards.tomo),
        px=lambda wildcards: reference_pixel_opt(
            wildcards.tomo, "--reference-pixel-size"
        ),
    shell:
        "faket noise {input.clean} --reference {input.reference} -o {output.tilts} --global "
        "{params.opts} {params.px} --seed {params.seed} --threads {threads} --quiet > {log} 2>&1"
