# The picker benchmark (the FakET paper's evaluation, docs/picker.md):
#   snakemake --cores 2 --configfile config/benchmark.yaml benchmark
# Training layouts train_NNN -> modalities BENCHMARK (physics path, faket reference), FAKET (styled with the
# physics tilt-series of the next training layout), NOISY, BASELINE (noise fitted to that same tilt-series),
# NOISELESS -> tomograms + labels; held-out test layouts test_NNN simulated by the physics path (or the user's
# annotated tomograms, benchmark.test) -> one picker per modality and seed (faket picker train), segment,
# localize, faket evaluate -> results/benchmark/scores.csv, scores.md, f1.png.
# Everything lives under results/benchmark/; the options come from the same config keys as the main workflow.

from faket.picker import benchmark as _bm

BM = config["benchmark"]
BM_DIR = "results/benchmark"
BM_SPEC = BM["layout_spec"] or config["layout"]["spec"]
BM_TRAIN = _bm.train_names(BM["train_tomograms"])
try:
    BM_USER = _bm.user_test_sets(BM["test"])
except Exception as _exc:  # InputError: one line naming the key
    raise WorkflowError(str(_exc))
BM_TEST = [u["name"] for u in BM_USER] or _bm.test_names(BM["test_tomograms"])
BM_USER_BY = {u["name"]: u for u in BM_USER}
BM_SEEDS = _bm.picker_seeds(BM["seeds"])
BM_MODS = BM["modalities"]
BM_BIN = BM["bin"]
BM_NZ = _bm.layout_box(BM_SPEC, config["layout"]["shape_zyx"])[0]
_zr = config["reconstruct"]["z_range"] or [0, BM_NZ]
BM_Z = f"--z-range {_zr[0]}:{_zr[1]} --volume-z {BM_NZ}"
_phys = config["reference"]["physics"]
_bseed = {n: BM["train_seed"] + i for i, n in enumerate(BM_TRAIN)}
_bseed.update({n: BM["test_seed"] + i for i, n in enumerate(_bm.test_names(BM["test_tomograms"]))})
BM_P = BM["picker"]


def bm_seed(name):
    return _bseed[name]


def bm_physics_opts(name):
    test = not name.startswith("train_")
    dfc = BM["test_defocus_um"] if test and BM["test_defocus_um"] is not None else _phys["defocus_um"]
    dose = BM["test_dose"] if test and BM["test_dose"] is not None else _phys["dose"]
    opts = [f"--defocus-um {_bm.drawn(bm_seed(name), 'reference.physics.defocus_um', dfc):g}"]
    if dose is not None:
        opts.append(f"--dose {dose:g}")
    return " ".join(opts)


def bm_partner(name):
    return f"{BM_DIR}/{_bm.style_partner(name, BM_TRAIN)}/tiltseries/benchmark.mrc"


def bm_layout_opts():
    opts = [f"--spec {BM_SPEC}"] if BM_SPEC else []
    if config["layout"]["shape_zyx"]:
        opts.append("--shape " + ",".join(str(v) for v in config["layout"]["shape_zyx"]))
    if config["layout"]["voxel_size_a"]:
        opts.append(f"--voxel-size {config['layout']['voxel_size_a']:g}")
    return " ".join(opts)


def bm_noise_opts(name):
    n = config["noise"]
    opts = f"--estimate {n['estimate']} --content-noise {n['content_noise']:g}"
    snr = _bm.drawn(bm_seed(name), "noise.snr", n["snr"])
    return opts + ("" if snr is None else f" --snr {snr:g}")


def bm_style_opts():
    st = config["style"]
    opts = f"--weights {st['weights']} --precision {st['precision']}"
    return opts + ("" if st["iterations"] is None else f" --iterations {st['iterations']}")


def bm_train_opts(wildcards):
    keys = ("steps", "batch", "patch", "lr", "shift", "p_rotate", "background_ratio")
    return " ".join(f"--{k.replace('_', '-')} {BM_P[k]}" for k in keys)


def bm_localize_opts():
    o = f"--bandwidth {BM_P['bandwidth']:g} --min-size-fraction {BM_P['min_size_fraction']:g}"
    return o + (" --per-class" if BM_P["per_class"] else "")


def bm_test_inputs(wildcards):
    t = wildcards.btest
    if t in BM_USER_BY:
        return {"tomogram": BM_USER_BY[t]["tomogram"],
                "truth": f"{BM_DIR}/user/{t}/particles.csv",
                "occupancy": f"{BM_DIR}/user/{t}/occupancy_mask.mrc"}
    return {"tomogram": f"{BM_DIR}/{t}/tomogram_benchmark_bin{BM_BIN}.mrc",
            "truth": f"{BM_DIR}/{t}/particles_bin{BM_BIN}.csv",
            "occupancy": f"{BM_DIR}/{t}/occupancy_mask_bin{BM_BIN}.mrc"}


def bm_train_tomograms(modality):
    return [f"{BM_DIR}/{n}/tomogram_{modality}_bin{BM_BIN}.mrc" for n in BM_TRAIN]


def bm_metrics():
    return [f"{BM_DIR}/runs/{m}/seed{s}/{t}/metrics.json" for m in BM_MODS for s in BM_SEEDS for t in BM_TEST]


def bm_summary_args(wildcards, input):
    runs = [(m, s, t) for m in BM_MODS for s in BM_SEEDS for t in BM_TEST]
    return " ".join(f"--metrics {m} {s} {t} {p}" for (m, s, t), p in zip(runs, input.metrics))


BM_NOTE = (
    f"Configuration: {len(BM_TRAIN)} training layouts ({BM_SPEC or 'faket layout default'}), "
    f"{'user test set' if BM_USER else f'{len(BM_TEST)} held-out physics-simulated layout(s)'}, bin {BM_BIN}, "
    f"angles {config['angles']}, style weights {config['style']['weights']}; picker: {BM_P['steps']} steps x "
    f"{BM_P['batch']} patches of {BM_P['patch']}^3, lr {BM_P['lr']:g}; seeds {BM_SEEDS}; "
    f"excluded classes: {', '.join(BM['exclude_classes']) or 'none'}."
)


wildcard_constraints:
    bname="|".join(BM_TRAIN + _bm.test_names(BM["test_tomograms"])),
    btrain="|".join(BM_TRAIN),
    btest="|".join(BM_TEST),
    bmod="|".join(_bm.MODALITIES),
    bseed=r"\d+",


rule benchmark:
    input:
        f"{BM_DIR}/scores.csv",
        f"{BM_DIR}/scores.md",
        f"{BM_DIR}/f1.png",


rule benchmark_layout:
    output:
        volume=f"{BM_DIR}/{{bname}}/layout/volume.mrc",
        class_mask=f"{BM_DIR}/{{bname}}/layout/class_mask.mrc",
        occupancy_mask=f"{BM_DIR}/{{bname}}/layout/occupancy_mask.mrc",
        particles=f"{BM_DIR}/{{bname}}/layout/particles.csv",
    log:
        "logs/benchmark/{bname}/layout.log",
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.volume),
        seed=lambda wildcards: bm_seed(wildcards.bname),
        opts=bm_layout_opts(),
    shell:
        "faket layout {params.opts} -o {params.outdir} --seed {params.seed} --quiet > {log} 2>&1"


rule benchmark_project:
    input:
        volume=f"{BM_DIR}/{{btrain}}/layout/volume.mrc",
    output:
        tilts=f"{BM_DIR}/{{btrain}}/tiltseries/noiseless.mrc",
    log:
        "logs/benchmark/{btrain}/project.log",
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
    threads: 1
    params:
        angles=config["angles"],
        seed=lambda wildcards: bm_seed(wildcards.bname),
        opts=lambda wildcards: bm_physics_opts(wildcards.bname),
    shell:
        "faket reference {input.volume} -o {output.tilts} --angles {params.angles} {params.opts} "
        "--seed {params.seed} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_noise:
    input:
        clean=f"{BM_DIR}/{{btrain}}/tiltseries/noiseless.mrc",
        reference=lambda wildcards: bm_partner(wildcards.btrain),
    output:
        noisy=f"{BM_DIR}/{{btrain}}/tiltseries/noisy.mrc",
        content=f"{BM_DIR}/{{btrain}}/tiltseries/content.mrc",
    log:
        "logs/benchmark/{btrain}/noise.log",
    threads: 1
    params:
        seed=lambda wildcards: bm_seed(wildcards.btrain),
        opts=lambda wildcards: bm_noise_opts(wildcards.btrain),
    shell:
        "faket noise {input.clean} --reference {input.reference} -o {output.noisy} "
        "--content-out {output.content} {params.opts} --seed {params.seed} --threads {threads} "
        "--quiet > {log} 2>&1"


rule benchmark_baseline:
    input:
        clean=f"{BM_DIR}/{{btrain}}/tiltseries/noiseless.mrc",
        reference=lambda wildcards: bm_partner(wildcards.btrain),
    output:
        tilts=f"{BM_DIR}/{{btrain}}/tiltseries/baseline.mrc",
    log:
        "logs/benchmark/{btrain}/baseline.log",
    threads: 1
    params:
        seed=lambda wildcards: bm_seed(wildcards.btrain),
        opts=lambda wildcards: bm_noise_opts(wildcards.btrain),
    shell:
        "faket noise {input.clean} --reference {input.reference} -o {output.tilts} --global {params.opts} "
        "--seed {params.seed} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_style:
    input:
        content=f"{BM_DIR}/{{btrain}}/tiltseries/content.mrc",
        noisy=f"{BM_DIR}/{{btrain}}/tiltseries/noisy.mrc",
        reference=lambda wildcards: bm_partner(wildcards.btrain),
    output:
        tilts=f"{BM_DIR}/{{btrain}}/tiltseries/faket.mrc",
    log:
        "logs/benchmark/{btrain}/style.log",
    threads: 1
    params:
        seed=lambda wildcards: bm_seed(wildcards.btrain),
        opts=bm_style_opts(),
    shell:
        "faket style {input.content} --style {input.reference} --init {input.noisy} -o {output.tilts} "
        "{params.opts} --seed {params.seed} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_reconstruct:
    input:
        tilts=f"{BM_DIR}/{{bname}}/tiltseries/{{bmod}}.mrc",
    output:
        tomogram=f"{BM_DIR}/{{bname}}/tomogram_{{bmod}}_bin{BM_BIN}.mrc",
    log:
        "logs/benchmark/{bname}/reconstruct_{bmod}.log",
    threads: 1
    params:
        z=BM_Z,
        bin=BM_BIN,
        filter=config["reconstruct"]["filter"],
    shell:
        "faket reconstruct {input.tilts} -o {output.tomogram} --bin {params.bin} {params.z} "
        "--filter {params.filter} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_labels:
    input:
        class_mask=f"{BM_DIR}/{{bname}}/layout/class_mask.mrc",
        occupancy_mask=f"{BM_DIR}/{{bname}}/layout/occupancy_mask.mrc",
        particles=f"{BM_DIR}/{{bname}}/layout/particles.csv",
    output:
        class_mask=f"{BM_DIR}/{{bname}}/class_mask_bin{BM_BIN}.mrc",
        occupancy_mask=f"{BM_DIR}/{{bname}}/occupancy_mask_bin{BM_BIN}.mrc",
        particles=f"{BM_DIR}/{{bname}}/particles_bin{BM_BIN}.csv",
    log:
        "logs/benchmark/{bname}/labels.log",
    params:
        outdir=f"{BM_DIR}/{{bname}}",
        bin=BM_BIN,
        z=f"--z-range {_zr[0]}:{_zr[1]}",
    shell:
        "faket labels --class-mask {input.class_mask} --occupancy {input.occupancy_mask} "
        "--particles {input.particles} -o {params.outdir} --bin {params.bin} {params.z} --quiet > {log} 2>&1"


rule benchmark_user_truth:
    input:
        tomogram=lambda wildcards: BM_USER_BY[wildcards.btest]["tomogram"],
        picks=lambda wildcards: BM_USER_BY[wildcards.btest]["picks"],
    output:
        truth=f"{BM_DIR}/user/{{btest}}/particles.csv",
        occupancy=f"{BM_DIR}/user/{{btest}}/occupancy_mask.mrc",
    log:
        "logs/benchmark/user/{btest}/truth.log",
    params:
        outdir=f"{BM_DIR}/user/{{btest}}",
        occ=lambda wildcards: (
            f"--occupancy {BM_USER_BY[wildcards.btest]['occupancy_mask']}"
            if BM_USER_BY[wildcards.btest]["occupancy_mask"]
            else f"--radius {BM_USER_BY[wildcards.btest]['radius']:g}"
        ),
    shell:
        "faket picker truth --tomogram {input.tomogram} --picks {input.picks} {params.occ} "
        "-o {params.outdir} --quiet > {log} 2>&1"


rule benchmark_train:
    input:
        tomograms=lambda wildcards: bm_train_tomograms(wildcards.bmod),
        masks=[f"{BM_DIR}/{n}/class_mask_bin{BM_BIN}.mrc" for n in BM_TRAIN],
        particles=[f"{BM_DIR}/{n}/particles_bin{BM_BIN}.csv" for n in BM_TRAIN],
    output:
        model=f"{BM_DIR}/models/{{bmod}}/seed{{bseed}}/model.pt",
    log:
        "logs/benchmark/models/{bmod}_seed{bseed}.log",
    threads: BM["threads"]
    resources:
        gpu=1 if BM["device"].startswith("cuda") else 0,
    params:
        pairs=lambda wildcards, input: " ".join(
            f"--tomogram {t} --class-mask {m} --particles {p}"
            for t, m, p in zip(input.tomograms, input.masks, input.particles)
        ),
        opts=bm_train_opts,
        device=BM["device"],
    shell:
        "faket picker train {params.pairs} -o {output.model} {params.opts} --seed {wildcards.bseed} "
        "--device {params.device} --threads {threads} --quiet > {log} 2>&1"


rule benchmark_score:
    input:
        unpack(bm_test_inputs),
        model=f"{BM_DIR}/models/{{bmod}}/seed{{bseed}}/model.pt",
    output:
        labels=f"{BM_DIR}/runs/{{bmod}}/seed{{bseed}}/{{btest}}/labels.mrc",
        picks=f"{BM_DIR}/runs/{{bmod}}/seed{{bseed}}/{{btest}}/picks.csv",
        metrics=f"{BM_DIR}/runs/{{bmod}}/seed{{bseed}}/{{btest}}/metrics.json",
    log:
        "logs/benchmark/runs/{bmod}_seed{bseed}_{btest}.log",
    threads: BM["threads"]
    resources:
        gpu=1 if BM["device"].startswith("cuda") else 0,
    params:
        device=BM["device"],
        overlap=BM_P["overlap"],
        loc=bm_localize_opts(),
        exclude=" ".join(f"--exclude-class {c}" for c in BM["exclude_classes"]),
    shell:
        "(faket picker segment {input.tomogram} --model {input.model} -o {output.labels} "
        "--overlap {params.overlap} --device {params.device} --threads {threads} --quiet && "
        "faket picker localize {output.labels} --model {input.model} -o {output.picks} {params.loc} --quiet && "
        "faket evaluate --truth {input.truth} --occupancy {input.occupancy} --pred {output.picks} "
        "-o {output.metrics} {params.exclude} --clip --quiet) > {log} 2>&1"


rule benchmark_summary:
    input:
        metrics=bm_metrics(),
    output:
        csv=f"{BM_DIR}/scores.csv",
        md=f"{BM_DIR}/scores.md",
        png=f"{BM_DIR}/f1.png",
    log:
        "logs/benchmark/summary.log",
    params:
        runs=bm_summary_args,
        note=BM_NOTE,
    shell:
        "faket picker summarize {params.runs} -o {output.csv} --table {output.md} --figure {output.png} "
        "--note {params.note:q} --quiet > {log} 2>&1"
