# The training set as a copick project (faket export copick; config export.copick, docs/copick.md).


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
