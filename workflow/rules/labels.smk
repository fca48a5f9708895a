# Labels cropped and binned like the tomograms, particle lists in each tomogram's voxel coordinates
# (faket labels). Cellular layouts (membranes, filaments) give more label files: their own rule.


rule labels:
    input:
        unpack(labels_inputs),
    output:
        labels_outputs(),
    log:
        "logs/{tomo}/labels.log",
    wildcard_constraints:
        tomo=tomo_pattern(cellular=False),
    conda:
        "../envs/faket.yaml"
    params:
        outdir="results/{tomo}",
        bins=",".join(str(b) for b in BINS),
        z=lambda wildcards: "--z-range {}:{}".format(*z_range(wildcards.tomo)),
        inputs=labels_opts,
    shell:
        "faket labels {params.inputs} -o {params.outdir} --bin {params.bins} {params.z} "
        "--quiet > {log} 2>&1"


rule labels_cellular:
    input:
        unpack(labels_inputs),
    output:
        labels_outputs(cellular=True),
    log:
        "logs/{tomo}/labels.log",
    wildcard_constraints:
        tomo=tomo_pattern(cellular=True),
    conda:
        "../envs/faket.yaml"
    params:
        outdir="results/{tomo}",
        bins=",".join(str(b) for b in BINS),
        z=lambda wildcards: "--z-range {}:{}".format(*z_range(wildcards.tomo)),
        inputs=labels_opts,
    shell:
        "faket labels {params.inputs} -o {params.outdir} --bin {params.bins} {params.z} "
        "--quiet > {log} 2>&1"
