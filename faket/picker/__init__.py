"""A small, faithful harness of the DeepFinder picker protocol used by the FakET paper (PyTorch + MONAI).

Pure functions (arrays in, arrays out), one module each (imported on use; torch/monai load there):

- ``net``: :class:`~faket.picker.net.DeepFinderUNet`, DeepFinder's 3D U-Net.
- ``train``: :func:`~faket.picker.train.train_picker`: Tversky (+ cross-entropy) loss (MONAI), Adam, class-balanced patch
  sampling around particles and background (MONAI's label-class crop centres), per-patch z-score, random
  shift, 180-degree rotation about the tilt axis (Y).
- ``segment``: :func:`~faket.picker.segment.segment`: sliding-window inference (MONAI) -> argmax class map
  and class scores.
- ``localize``: :func:`~faket.picker.localize.localize`: MeanShift clustering (scikit-learn), majority label
  per cluster, per-class minimum cluster sizes -> a particle table for ``faket evaluate``.
- ``data``: :func:`~faket.picker.data.training_set`: training volumes and class masks checked and put
  together (class names, ids and mean particle sizes; ids mapped onto a model's when fine-tuning).
- ``benchmark``: the paper's evaluation (one picker per modality and seed): planning and summaries.
- ``stats``: :func:`~faket.picker.stats.paired_bootstrap`: paired differences with a bootstrap interval.

Needs the ``picker`` extra (``pip install 'faket[picker]'``: monai, scikit-learn).
"""

# training losses (faket.picker.train.picker_loss); here so `faket --help` lists them without importing torch
LOSSES = ("tversky+ce", "tversky")

# training precisions (faket.picker.train.resolve_precision): fp32; bf16 autocast (the network's convolutions in
# bfloat16, weights, loss and Adam in fp32); auto = bf16 on a CPU with AMX tiles (oneDNN's bf16 kernels), fp32
# elsewhere (bf16 without AMX is slower than fp32 on the CPU: docs/picker.md#training-precision)
PRECISIONS = ("fp32", "bf16", "auto")

# The picker's defaults, defined once: the core (train_picker, PatchSampler, segment, localize), the CLI
# (faket picker) and the config schema (benchmark.picker.*) take them from here (tests/test_benchmark.py
# compares them).
DEFAULTS = dict(
    steps=1000,
    batch=8,
    patch=16,
    lr=1e-4,
    shift=3,
    p_rotate=0.5,
    background_ratio=1.0,
    loss=LOSSES[0],
    precision=PRECISIONS[0],
    overlap=0.25,
    bandwidth=None,
    min_size_fraction=0.2,
)

#: bootstrap resamples of the benchmark's paired comparisons (faket.picker.stats)
N_BOOT = 10_000
