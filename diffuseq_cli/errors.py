"""Typed errors. The CLI turns them into a one-line message and an exit status in one place."""


class DiffuseqError(Exception):
    """A runtime failure the user can act on (exit status 1)."""

    exit_code = 1


class UsageError(DiffuseqError):
    """Wrong options or unknown names: the command was asked for something it cannot do (exit 2)."""

    exit_code = 2


class DataError(DiffuseqError):
    """Bad input data; the message names the file and line."""

    def __init__(self, message: str, path=None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.line = line
