"""After the pipeline: QC figures and image metrics (:mod:`~faket.evaluation.qc`, :mod:`~faket.evaluation.metrics`)
and SHREC 2021-style scoring of picks (:mod:`~faket.evaluation.evaluate`)."""
