# QC figures and metrics per tomogram (faket qc), grouped per tomogram by snakemake --report.


rule qc:
    input:
        unpack(qc_inputs),
    output:
        montage=report(
            "results/{tomo}/qc/montage.png",
            caption="../report/montage.rst",
            category="QC",
            subcategory="{tomo}",
            labels={"tomogram": "{tomo}", "figure": "tilt montage"},
        ),
        spectra=report(
            "results/{tomo}/qc/spectra.png",
            caption="../report/spectra.rst",
            category="QC",
            subcategory="{tomo}",
            labels={"tomogram": "{tomo}", "figure": "power spectra"},
        ),
        tilt_stats=report(
            "results/{tomo}/qc/tilt_stats.png",
            caption="../report/tilt_stats.rst",
            category="QC",
            subcategory="{tomo}",
            labels={"tomogram": "{tomo}", "figure": "tilt statistics"},
        ),
        slices=report(
            "results/{tomo}/qc/slices.png",
            caption="../report/slices.rst",
            category="QC",
            subcategory="{tomo}",
            labels={"tomogram": "{tomo}", "figure": "tomogram slices"},
        ),
        metrics=report(
            "results/{tomo}/qc/metrics.json",
            caption="../report/metrics.rst",
            category="QC",
            subcategory="{tomo}",
            labels={"tomogram": "{tomo}", "figure": "metrics"},
        ),
    log:
        "logs/{tomo}/qc.log",
    conda:
        "../envs/faket.yaml"
    threads: 1
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.metrics),
        opts=qc_opts,
    shell:
        "faket qc {params.opts} -o {params.outdir} --name {wildcards.tomo} --quiet > {log} 2>&1"
