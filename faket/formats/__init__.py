"""File formats, read and written in one place: MRC (:mod:`~faket.formats.mrc`), tilt angles and metadata
(:mod:`~faket.formats.tiltmeta`), particle tables (:mod:`~faket.formats.table`, :mod:`~faket.formats.particles`),
copick (:mod:`~faket.formats.copick`, :mod:`~faket.formats.copick_export`) and the data manifest
(:mod:`~faket.formats.manifest`). Nothing here imports a pipeline stage."""
