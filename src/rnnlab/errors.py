"""Errors a user can fix: the CLI prints their message on one line and exits non-zero."""


class UserError(ValueError):
    """A problem with the user's input (file, run directory, option); message says what to do."""
