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


class FieldError(UsageError, ValueError):
    """Bad settings, named by their fields: ``"{steps} must be at least 1, got 0"``.

    Library users read field names (``steps must be at least 1, got 0``); the CLI renders the
    same error with its flags (``--steps must be at least 1, got 0``) through :meth:`render`, so the
    library never spells a flag and the two cannot drift apart.
    """

    def __init__(self, template: str):
        import string

        self.template = template
        self.fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
        super().__init__(self.render(lambda name: name))

    def __reduce__(self):  # rebuilt from the template (errors cross process boundaries pickled)
        return (type(self), (self.template,))

    def render(self, name_of) -> str:
        """The message with each field written as ``name_of(field)``."""
        return self.template.format_map({f: name_of(f) for f in self.fields})


def literal(value) -> str:
    """``value`` as text to put in a FieldError template unchanged (braces escaped): paths, user input."""
    return str(value).replace("{", "{{").replace("}", "}}")


def at_least(field: str, value, minimum: int = 1) -> None:
    """The one wording of a number below its lowest value, for every command and setting:
    ``{steps} must be at least 1, got 0`` (None: not given, nothing to check)."""
    if value is not None and value < minimum:
        raise FieldError(f"{{{field}}} must be at least {minimum}, got {literal(value)}")
