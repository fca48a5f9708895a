"""The command-line option each real-reference value comes from, per command kind (noise, style, realism).

Kept apart from :mod:`faket.imaging.reference` (numpy, mrcfile) so that building ``faket``'s parser stays light;
the core names these options in its errors, since that is where a user fixes them.
"""

#: pixel size of the reference, per kind
PIXEL_SIZE_OPTION = {"noise": "--reference-pixel-size", "style": "--style-pixel-size", "realism": "--real-pixel-size"}
#: angle file of the reference, per kind
ANGLES_OPTION = {"noise": "--reference-angles-file", "style": "--style-angles-file", "realism": "--real-angles-file"}
