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
- ``benchmark``: the paper's evaluation (one picker per modality and seed): planning and summaries.

Needs the ``picker`` extra (``pip install 'faket[picker]'``: monai, scikit-learn).
"""

# training losses (faket.picker.train.picker_loss); here so `faket --help` lists them without importing torch
LOSSES = ("tversky+ce", "tversky")
