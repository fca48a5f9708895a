"""Error types shared by the core modules and the command line."""


class InputError(ValueError):
    """Bad user input (file, option or data).

    The command line turns it into one line on stderr and exit code 2, with no traceback and no
    output written. The message should name the file (or option) and the problem.
    """


class MissingGeometry(InputError):
    """An input needs a voxel size or volume size that was not given (``needs``: ``"voxel_size_a"`` or
    ``"box_zyx"``), so that a command line can name its own option for it."""

    def __init__(self, message: str, *, needs: str):
        super().__init__(message)
        self.needs = needs
