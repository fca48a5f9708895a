# Labels cropped and binned like the tomograms, particle lists in each tomogram's voxel coordinates
# (faket labels).


rule labels:
    input:
        class_mask=lambda wildcards: layout_file(wildcards.tomo, "class_mask"),
        occupancy_mask=lambda wildcards: layout_file(wildcards.tomo, "occupancy_mask"),
        particles=lambda wildcards: layout_file(wildcards.tomo, "particles"),
    output:
        labels_outputs(),
    log:
        "logs/{tomo}/labels.log",
    conda:
        "../envs/faket.yaml"
    params:
        outdir="results/{tomo}",
        bins=",".join(str(b) for b in BINS),
        z=lambda wildcards: "--z-range {}:{}".format(*z_range(wildcards.tomo)),
    shell:
        "faket labels --class-mask {input.class_mask} --occupancy {input.occupancy_mask} "
        "--particles {input.particles} -o {params.outdir} --bin {params.bins} {params.z} "
        "--quiet > {log} 2>&1"
