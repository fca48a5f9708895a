"""Error types shared by the core modules and the command line."""


class InputError(ValueError):
    """Bad user input (file, option or data).

    The command line turns it into one line on stderr and exit code 2, with no traceback and no
    output written. The message should name the file (or option) and the problem.
    """
