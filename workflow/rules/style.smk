# Neural style transfer (faket style), scattered over chunks of style.tilts_per_job tilts and gathered
# by faket stack; seeds make the result independent of the chunking.


rule style_chunk:
    input:
        content="results/{tomo}/tiltseries/content.mrc",
        noisy="results/{tomo}/tiltseries/noisy.mrc",
        reference=lambda wildcards: reference_tilts(wildcards.tomo),
    output:
        tilts=temp("results/{tomo}/tiltseries/faket_chunks/tilts_{chunk}.mrc"),
        tlt=temp("results/{tomo}/tiltseries/faket_chunks/tilts_{chunk}.tlt"),
        sidecar=temp("results/{tomo}/tiltseries/faket_chunks/tilts_{chunk}.json"),
    log:
        "logs/{tomo}/style_{chunk}.log",
    conda:
        "../envs/faket.yaml"
    threads: 2
    resources:
        gpu=0,
    params:
        tilts=chunk_range,
        seed=lambda wildcards: tomo_seed(wildcards.tomo),
        opts=lambda wildcards: style_opts(wildcards.tomo),
        px=lambda wildcards: reference_pixel_opt(wildcards.tomo, "--style-pixel-size"),
    shell:
        "faket style {input.content} --style {input.reference} --init {input.noisy} "
        "-o {output.tilts} --tilts {params.tilts} {params.opts} {params.px} --seed {params.seed} "
        "--threads {threads} --quiet > {log} 2>&1"


rule gather_style:
    input:
        chunks=lambda wildcards: expand(
            "results/{tomo}/tiltseries/faket_chunks/tilts_{chunk}.mrc",
            tomo=wildcards.tomo,
            chunk=chunks(),
        ),
        tlts=lambda wildcards: expand(
            "results/{tomo}/tiltseries/faket_chunks/tilts_{chunk}.tlt",
            tomo=wildcards.tomo,
            chunk=chunks(),
        ),
        sidecars=lambda wildcards: expand(
            "results/{tomo}/tiltseries/faket_chunks/tilts_{chunk}.json",
            tomo=wildcards.tomo,
            chunk=chunks(),
        ),
        content_tlt="results/{tomo}/tiltseries/content.tlt",
    output:
        tilts="results/{tomo}/tiltseries/faket.mrc",
        tlt="results/{tomo}/tiltseries/faket.tlt",
    log:
        "logs/{tomo}/gather_style.log",
    conda:
        "../envs/faket.yaml"
    shell:
        "faket stack {input.chunks} -o {output.tilts} --expect-angles {input.content_tlt} "
        "--quiet > {log} 2>&1"
