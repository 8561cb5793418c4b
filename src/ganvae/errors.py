"""The one user-facing error type.

Library code raises :class:`GanvaeError` for anything a user can fix (a bad
path, an unknown name, an option out of range). The CLI prints its message on
one line of stderr and exits with :attr:`GanvaeError.exit_code`; Python callers
get an ordinary exception.
"""


class GanvaeError(Exception):
    """A problem with the user's input, explained in one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # keep it one line whatever was passed in
        return " ".join(str(self.message).split())
