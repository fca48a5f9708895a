# Weighted back-projection of each modality's tilt-series (faket reconstruct), Z crop and binnings from
# the config: tomogram_bin<B>.mrc (faket) and tomogram_<modality>_bin<B>.mrc (faket.formats.names).


rule reconstruct_faket:
    input:
        tilts="results/{tomo}/tiltseries/faket.mrc",
    output:
        tomogram=tomogram_path("{tomo}", "faket", "{bin}"),
    log:
        "logs/{tomo}/reconstruct_faket_bin{bin}.log",
    conda:
        "../envs/faket.yaml"
    threads: 2
    params:
        z=lambda wildcards: z_range_opt(wildcards.tomo),
        filter=config["reconstruct"]["filter"],
    shell:
        "faket reconstruct {input.tilts} -o {output.tomogram} --bin {wildcards.bin} {params.z} "
        "--filter {params.filter} --threads {threads} --quiet > {log} 2>&1"


rule reconstruct_modality:
    input:
        tilts="results/{tomo}/tiltseries/{modality}.mrc",
    output:
        tomogram=tomogram_path("{tomo}", "{modality}", "{bin}"),
    log:
        "logs/{tomo}/reconstruct_{modality}_bin{bin}.log",
    conda:
        "../envs/faket.yaml"
    threads: 2
    params:
        z=lambda wildcards: z_range_opt(wildcards.tomo),
        filter=config["reconstruct"]["filter"],
    shell:
        "faket reconstruct {input.tilts} -o {output.tomogram} --bin {wildcards.bin} {params.z} "
        "--filter {params.filter} --threads {threads} --quiet > {log} 2>&1"
