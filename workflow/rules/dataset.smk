# The index of every tomogram and its label files, for training code (faket dataset).


rule dataset:
    input:
        [tomograms_of(t) + labels_of(t) for t in TOMOS],
    output:
        csv=DATASET_CSV,
    log:
        "logs/dataset.log",
    conda:
        "../envs/faket.yaml"
    params:
        folders=[f"results/{t}" for t in TOMOS],
    shell:
        "faket dataset {params.folders} -o {output.csv} --quiet > {log} 2>&1"
