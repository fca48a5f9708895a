"""Stages 2-3 and 5 - imaging: projection and weighted back-projection (:mod:`~faket.imaging.projection`), the
physics reference (:mod:`~faket.imaging.physics`), tilt-aware noise (:mod:`~faket.imaging.noise`), and real
references: resampling (:mod:`~faket.imaging.sampling`), hazards (:mod:`~faket.imaging.refcheck`), tilt matching
(:mod:`~faket.imaging.tilts`) and their preparation (:mod:`~faket.imaging.reference`)."""
