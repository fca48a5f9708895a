# The picker benchmark (docs/picker.md): "train on data styled to my microscope, score on my tomograms".
#   snakemake --cores 2 --configfile=config/benchmark.yaml benchmark          (= faket benchmark)
# (with "--configfile=", or the target before --configfile: snakemake reads every word after a bare
# --configfile as a config file). Two domains: the training domain is the physics simulator at the workflow's
# settings; the test domain (benchmark.test_domain, "the user's microscope") the same simulator with other
# acquisition and specimen settings. Training layouts train_NNN -> modalities BENCHMARK(-MISMATCHED) (physics,
# training domain), PHYSICS-MATCHED (physics, test domain: the oracle), NOISY, BASELINE, FAKET fitted / styled
# to the test domain's unlabelled tilt-series unlabelled_NNN, OFFLINE (faket noise + style at their defaults,
# fitted the same way), NOISELESS -> tomograms + labels; annotated test-domain layouts test_NNN (or the user's
# annotated tomograms, benchmark.test): the first max(k) fine-tune, the others are scored -> one picker per
# modality and seed (faket picker train), fine-tuned per k (--init), pickers trained on the k alone; segment,
# localize, score -> results/benchmark/scores.csv, scores.md, f1.png, comparisons.csv, comparisons.png.
# Everything lives under results/benchmark/; names, seeds and options come from faket.picker.benchmark.Plan.

from faket.picker.benchmark import Plan as _BenchmarkPlan
from faket.errors import InputError as _InputError

try:
    BMP = _BenchmarkPlan(config)
except _InputError as _exc:
    raise WorkflowError(str(_exc))
BM_DIR = BMP.DIR
BM_BIN = BMP.bin


wildcard_constraints:
    bname=BMP.pattern(BMP.layouts()),
    btrain=BMP.pattern(BMP.train),
    blabelled=BMP.pattern(BMP.train + BMP.generated_test),
    btest=BMP.pattern(BMP.annotated),
    bfolder=BMP.pattern(BMP.user_tests("folder")),
    bcopick=BMP.pattern(BMP.user_tests("copick")),
    bmod="benchmark|matched|faket|noisy|baseline|noiseless|offline",
    brow=BMP.pattern(BMP.rows()),
    bk=r"\d+",
    bseed=r"\d+",


rule benchmark:
    input:
        f"{BM_DIR}/scores.csv",
        f"{BM_DIR}/scores.md",
        f"{BM_DIR}/f1.png",
        f"{BM_DIR}/comparisons.csv",
        f"{BM_DIR}/comparisons.png",


rule benchmark_layout:
    output:
        volume=f"{BM_DIR}/{{bname}}/layout/volume.mrc",
        class_mask=f"{BM_DIR}/{{bname}}/layout/class_mask.mrc",
        occupancy_mask=f"{BM_DIR}/{{bname}}/layout/occupancy_mask.mrc",
        particles=f"{BM_DIR}/{{bname}}/layout/particles.csv",
    log:
        "logs/benchmark/{bname}/layout.log",
    conda:
        "../envs/faket.yaml"
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.volume),
        seed=lambda wildcards: BMP.seed(wildcards.bname),
        opts=BMP.layout_opts(),
    shell:
        "faket layout {params.opts} -o {params.outdir} --seed {params.seed} --quiet > {log} 2>&1"


rule benchmark_project:
    input:
        volume=f"{BM_DIR}/{{btrain}}/layout/volume.mrc",
    output:
        tilts=f"{BM_DIR}/{{btrain}}/tiltseries/noiseless.mrc",
    log:
        "logs/benchmark/{btrain}/project.log",
    conda:
        "../envs/faket.yaml"
    threads: 1
    params:
        angles=config["angles"],
    shell:
        "faket project {input.volume} -o {output.tilts} --angles {params.angles} --threads {threads} "
        "--quiet > {log} 2>&1"


rule benchmark_physics:
    input:
        volume=f"{BM_DIR}/{{bname}}/layout/volume.mrc",
    output:
        tilts=f"{BM_DIR}/{{bname}}/tiltseries/benchmark.mrc",
    log:
        "logs/benchmark/{bname}/physics.log",
    conda:
        "../envs/faket.yaml"
    threads: 1
    params:
        angles=config["angles"],
        seed=lambda wildcards: BMP.seed(wildcards.bname),
        opts=lambda wildcards: BMP.physics_opts(wildcards.bname),
    shell:
        "faket reference {input.volume} -o {output.tilts} --angles {params.angles} {params.opts} "
        "--seed {params.seed} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_matched:
    input:
        volume=f"{BM_DIR}/{{btrain}}/layout/volume.mrc",
    output:
        tilts=f"{BM_DIR}/{{btrain}}/tiltseries/matched.mrc",
    log:
        "logs/benchmark/{btrain}/matched.log",
    conda:
        "../envs/faket.yaml"
    threads: 1
    params:
        angles=config["angles"],
        seed=lambda wildcards: BMP.seed(wildcards.btrain),
        opts=lambda wildcards: BMP.physics_opts(wildcards.btrain, domain="test"),
    shell:
        "faket reference {input.volume} -o {output.tilts} --angles {params.angles} {params.opts} "
        "--seed {params.seed} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_noise:
    input:
        clean=f"{BM_DIR}/{{btrain}}/tiltseries/noiseless.mrc",
        reference=lambda wildcards: BMP.partner_tilts(wildcards.btrain),
    output:
        noisy=f"{BM_DIR}/{{btrain}}/tiltseries/noisy.mrc",
        content=f"{BM_DIR}/{{btrain}}/tiltseries/content.mrc",
    log:
        "logs/benchmark/{btrain}/noise.log",
    conda:
        "../envs/faket.yaml"
    threads: 1
    params:
        seed=lambda wildcards: BMP.seed(wildcards.btrain),
        opts=lambda wildcards: BMP.noise_opts(wildcards.btrain),
    shell:
        "faket noise {input.clean} --reference {input.reference} -o {output.noisy} "
        "--content-out {output.content} {params.opts} --seed {params.seed} --threads {threads} "
        "--quiet > {log} 2>&1"


rule benchmark_baseline:
    input:
        clean=f"{BM_DIR}/{{btrain}}/tiltseries/noiseless.mrc",
        reference=lambda wildcards: BMP.partner_tilts(wildcards.btrain),
    output:
        tilts=f"{BM_DIR}/{{btrain}}/tiltseries/baseline.mrc",
    log:
        "logs/benchmark/{btrain}/baseline.log",
    conda:
        "../envs/faket.yaml"
    threads: 1
    params:
        seed=lambda wildcards: BMP.seed(wildcards.btrain),
        opts=lambda wildcards: BMP.noise_opts(wildcards.btrain),
    shell:
        "faket noise {input.clean} --reference {input.reference} -o {output.tilts} --global {params.opts} "
        "--seed {params.seed} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_style:
    input:
        content=f"{BM_DIR}/{{btrain}}/tiltseries/content.mrc",
        noisy=f"{BM_DIR}/{{btrain}}/tiltseries/noisy.mrc",
        reference=lambda wildcards: BMP.partner_tilts(wildcards.btrain),
    output:
        tilts=f"{BM_DIR}/{{btrain}}/tiltseries/faket.mrc",
    log:
        "logs/benchmark/{btrain}/style.log",
    conda:
        "../envs/faket.yaml"
    threads: 1
    params:
        seed=lambda wildcards: BMP.seed(wildcards.btrain),
        opts=BMP.style_opts(),
    shell:
        "faket style {input.content} --style {input.reference} --init {input.noisy} -o {output.tilts} "
        "{params.opts} --seed {params.seed} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_offline_noise:
    input:
        clean=f"{BM_DIR}/{{btrain}}/tiltseries/noiseless.mrc",
        reference=lambda wildcards: BMP.partner_tilts(wildcards.btrain),
    output:
        noisy=f"{BM_DIR}/{{btrain}}/tiltseries/offline_noisy.mrc",
        content=f"{BM_DIR}/{{btrain}}/tiltseries/offline_content.mrc",
    log:
        "logs/benchmark/{btrain}/offline_noise.log",
    conda:
        "../envs/faket.yaml"
    threads: 1
    params:
        seed=lambda wildcards: BMP.seed(wildcards.btrain),
    shell:
        "faket noise {input.clean} --reference {input.reference} -o {output.noisy} "
        "--content-out {output.content} --seed {params.seed} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_offline_style:
    input:
        content=f"{BM_DIR}/{{btrain}}/tiltseries/offline_content.mrc",
        noisy=f"{BM_DIR}/{{btrain}}/tiltseries/offline_noisy.mrc",
        reference=lambda wildcards: BMP.partner_tilts(wildcards.btrain),
    output:
        tilts=f"{BM_DIR}/{{btrain}}/tiltseries/offline.mrc",
    log:
        "logs/benchmark/{btrain}/offline_style.log",
    conda:
        "../envs/faket.yaml"
    threads: 1
    params:
        seed=lambda wildcards: BMP.seed(wildcards.btrain),
    shell:
        "faket style {input.content} --style {input.reference} --init {input.noisy} -o {output.tilts} "
        "--weights random --seed {params.seed} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_reconstruct:
    input:
        tilts=f"{BM_DIR}/{{bname}}/tiltseries/{{bmod}}.mrc",
    output:
        tomogram=f"{BM_DIR}/{{bname}}/"
        + fw.tomogram_file("{bmod}", BM_BIN, name_faket=True),
    log:
        "logs/benchmark/{bname}/reconstruct_{bmod}.log",
    conda:
        "../envs/faket.yaml"
    threads: 1
    params:
        z=BMP.z_reconstruct,
        bin=BM_BIN,
        filter=config["reconstruct"]["filter"],
    shell:
        "faket reconstruct {input.tilts} -o {output.tomogram} --bin {params.bin} {params.z} "
        "--filter {params.filter} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_labels:
    input:
        class_mask=f"{BM_DIR}/{{blabelled}}/layout/class_mask.mrc",
        occupancy_mask=f"{BM_DIR}/{{blabelled}}/layout/occupancy_mask.mrc",
        particles=f"{BM_DIR}/{{blabelled}}/layout/particles.csv",
    output:
        class_mask=f"{BM_DIR}/{{blabelled}}/class_mask_bin{BM_BIN}.mrc",
        occupancy_mask=f"{BM_DIR}/{{blabelled}}/occupancy_mask_bin{BM_BIN}.mrc",
        particles=f"{BM_DIR}/{{blabelled}}/particles_bin{BM_BIN}.csv",
    log:
        "logs/benchmark/{blabelled}/labels.log",
    conda:
        "../envs/faket.yaml"
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.class_mask),
        bin=BM_BIN,
        z=BMP.z_labels,
    shell:
        "faket labels --class-mask {input.class_mask} --occupancy {input.occupancy_mask} "
        "--particles {input.particles} -o {params.outdir} --bin {params.bin} {params.z} --quiet > {log} 2>&1"


rule benchmark_user_truth:
    input:
        tomogram=lambda wildcards: BMP.user_by[wildcards.bfolder]["tomogram"],
        picks=lambda wildcards: BMP.user_by[wildcards.bfolder]["picks"],
    output:
        truth=f"{BM_DIR}/user/{{bfolder}}/particles.csv",
        occupancy=f"{BM_DIR}/user/{{bfolder}}/occupancy_mask.mrc",
        class_mask=f"{BM_DIR}/user/{{bfolder}}/class_mask.mrc",
    log:
        "logs/benchmark/user/{bfolder}/truth.log",
    conda:
        "../envs/faket.yaml"
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.truth),
        occ=lambda wildcards: BMP.truth_opts(wildcards.bfolder),
    shell:
        "faket picker truth --tomogram {input.tomogram} --picks {input.picks} {params.occ} "
        "-o {params.outdir} --quiet > {log} 2>&1"


rule benchmark_copick_truth:
    input:
        config=lambda wildcards: BMP.user_by[wildcards.bcopick]["config"],
    output:
        tomogram=f"{BM_DIR}/user/{{bcopick}}/tomogram.mrc",
        truth=f"{BM_DIR}/user/{{bcopick}}/particles.csv",
        occupancy=f"{BM_DIR}/user/{{bcopick}}/occupancy_mask.mrc",
        class_mask=f"{BM_DIR}/user/{{bcopick}}/class_mask.mrc",
    log:
        "logs/benchmark/user/{bcopick}/truth.log",
    conda:
        "../envs/faket.yaml"
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.truth),
        opts=lambda wildcards: BMP.truth_opts(wildcards.bcopick),
    shell:
        "faket picker truth {params.opts} -o {params.outdir} --quiet > {log} 2>&1"


rule benchmark_train:
    input:
        tomograms=lambda wildcards: BMP.train_tomograms(wildcards.bmod),
        masks=BMP.train_labels("class_mask"),
        particles=BMP.train_labels("particles"),
    output:
        model=f"{BM_DIR}/models/{{bmod}}/seed{{bseed}}/model.pt",
    log:
        "logs/benchmark/models/{bmod}_seed{bseed}.log",
    conda:
        "../envs/faket.yaml"
    threads: BMP.bm["threads"]
    resources:
        gpu=1 if BMP.bm["device"].startswith("cuda") else 0,
    params:
        pairs=lambda wildcards, input: BMP.train_pairs(
            input.tomograms, input.masks, input.particles
        ),
        opts=BMP.train_opts(),
        device=BMP.bm["device"],
    shell:
        "faket picker train {params.pairs} -o {output.model} {params.opts} --seed {wildcards.bseed} "
        "--device {params.device} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_finetune:
    input:
        unpack(lambda wildcards: BMP.finetune_inputs(int(wildcards.bk))),
        init=f"{BM_DIR}/models/{{bmod}}/seed{{bseed}}/model.pt",
    output:
        model=f"{BM_DIR}/models/{{bmod}}/seed{{bseed}}/finetune_k{{bk}}/model.pt",
    log:
        "logs/benchmark/models/{bmod}_seed{bseed}_finetune_k{bk}.log",
    conda:
        "../envs/faket.yaml"
    threads: BMP.bm["threads"]
    resources:
        gpu=1 if BMP.bm["device"].startswith("cuda") else 0,
    params:
        pairs=lambda wildcards, input: BMP.train_pairs(
            input.tomograms, input.masks, input.particles
        ),
        opts=BMP.finetune_opts(),
        device=BMP.bm["device"],
    shell:
        "faket picker train --init {input.init} {params.pairs} -o {output.model} {params.opts} "
        "--seed {wildcards.bseed} --device {params.device} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_alone:
    input:
        unpack(lambda wildcards: BMP.finetune_inputs(int(wildcards.bk))),
    output:
        model=f"{BM_DIR}/models/alone/seed{{bseed}}/k{{bk}}/model.pt",
    log:
        "logs/benchmark/models/alone_seed{bseed}_k{bk}.log",
    conda:
        "../envs/faket.yaml"
    threads: BMP.bm["threads"]
    resources:
        gpu=1 if BMP.bm["device"].startswith("cuda") else 0,
    params:
        pairs=lambda wildcards, input: BMP.train_pairs(
            input.tomograms, input.masks, input.particles
        ),
        opts=BMP.train_opts(),
        device=BMP.bm["device"],
    shell:
        "faket picker train {params.pairs} -o {output.model} {params.opts} --seed {wildcards.bseed} "
        "--device {params.device} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_score:
    input:
        unpack(lambda wildcards: BMP.test_inputs(wildcards.btest)),
        model=lambda wildcards: BMP.model(wildcards.brow, wildcards.bseed),
    output:
        labels=f"{BM_DIR}/runs/{{brow}}/seed{{bseed}}/{{btest}}/labels.mrc",
        picks=f"{BM_DIR}/runs/{{brow}}/seed{{bseed}}/{{btest}}/picks.csv",
        metrics=f"{BM_DIR}/runs/{{brow}}/seed{{bseed}}/{{btest}}/metrics.json",
    log:
        "logs/benchmark/runs/{brow}_seed{bseed}_{btest}.log",
    conda:
        "../envs/faket.yaml"
    threads: BMP.bm["threads"]
    resources:
        gpu=1 if BMP.bm["device"].startswith("cuda") else 0,
    params:
        device=BMP.bm["device"],
        overlap=BMP.picker["overlap"],
        loc=BMP.localize_opts(),
        exclude=" ".join(f"--exclude-class {c}" for c in BMP.bm["exclude_classes"]),
    shell:
        "(faket picker segment {input.tomogram} --model {input.model} -o {output.labels} "
        "--overlap {params.overlap} --device {params.device} --threads {threads} --quiet && "
        "faket picker localize {output.labels} --model {input.model} -o {output.picks} {params.loc} --quiet && "
        "faket picker score --truth {input.truth} --occupancy {input.occupancy} --pred {output.picks} "
        "-o {output.metrics} {params.exclude} --clip --quiet) > {log} 2>&1"


rule benchmark_summary:
    input:
        metrics=BMP.metrics(),
    output:
        csv=f"{BM_DIR}/scores.csv",
        md=f"{BM_DIR}/scores.md",
        png=f"{BM_DIR}/f1.png",
        comparisons=f"{BM_DIR}/comparisons.csv",
        comparisons_png=f"{BM_DIR}/comparisons.png",
    log:
        "logs/benchmark/summary.log",
    conda:
        "../envs/faket.yaml"
    params:
        runs=lambda wildcards, input: BMP.summary_args(input.metrics),
        note=BMP.note(),
        # the VGG weights FAKET was styled with, read when the summary runs from the styled tilt-series'
        # provenance (upstream of every FAKET score); a dry run shows the configured kind
        weights=lambda wildcards: fw.styled_weights_kind(
            (
                [f"{BM_DIR}/{n}/tiltseries/faket.json" for n in BMP.train]
                if "faket" in BMP.modalities
                else []
            ),
            config["style"]["weights"],
        ),
        opts=BMP.summary_opts(),
    shell:
        "faket picker summarize {params.runs} -o {output.csv} --table {output.md} --figure {output.png} "
        "--comparisons {output.comparisons} --comparisons-figure {output.comparisons_png} {params.opts} "
        "--note {params.note:q} --faket-weights {params.weights} --quiet > {log} 2>&1"
