# The training set as a copick project (faket export copick; config export.copick, docs/copick.md) and as a
# RELION 5 tomogram set (faket export relion; config export.relion, docs/relion.md).


rule export_copick:
    input:
        csv=DATASET_CSV,
    output:
        config="results/copick/copick_config.json",
    log:
        "logs/export_copick.log",
    conda:
        "../envs/copick.yaml"
    params:
        project=lambda wildcards, output: os.path.dirname(output.config),
    shell:
        "faket export copick results -o {params.project} --overwrite --quiet > {log} 2>&1"


rule export_relion:
    input:
        csv=DATASET_CSV,
    output:
        tomograms="results/relion/tomograms.star",
    log:
        "logs/export_relion.log",
    conda:
        "../envs/faket.yaml"
    params:
        folder=lambda wildcards, output: os.path.dirname(output.tomograms),
        modality=MODALITIES[0],
        bin=BINS[0],
    shell:
        "faket export relion results -o {params.folder} --modality {params.modality} --bin {params.bin} "
        "--overwrite --quiet > {log} 2>&1"
