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


class ParameterError(InputError):
    """A bad value of one named parameter of a core function or settings object.

    The message names the parameter as the core knows it (``step_size 0: must be > 0``); a command line
    rewrites it to its own option with :meth:`as_option` (``--step-size 0: must be > 0``).
    """

    def __init__(self, param: str, value, problem: str):
        self.param, self.value, self.problem = param, value, problem
        super().__init__(self._text(param))

    def _text(self, name: str) -> str:
        return f"{name}: {self.problem}" if self.value is None else f"{name} {self.value}: {self.problem}"

    def as_option(self, option: str | None = None, hint: str = "") -> InputError:
        """The same error worded for a command-line option (default ``--`` + the parameter with dashes)."""
        return InputError(self._text(option or "--" + self.param.replace("_", "-")) + hint)
