"""Errors the lab reports as one line, with the command that fixes them."""


class LabError(Exception):
    """A problem the user can fix; printed as one line, never as a traceback."""
