"""faket: fast labelled, realistic-looking cryo-electron tomograms (FakET method).

Pipeline steps (each a pure function module plus a thin CLI in :mod:`faket.cli`):
layout -> project -> reference -> noise -> style -> reconstruct -> labels -> qc / evaluate.
"""

__version__ = "0.1.0"
