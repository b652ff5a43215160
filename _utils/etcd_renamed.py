"""Old names of functions that moved, answering for one release (README: upgrade notes)."""

import logging

log = logging.getLogger(__name__)


def aliases(module_globals, module, renamed):
    """Add to a loader module (`module_globals`, its name `module`) one function per
    {old name: new "module.function"} that logs the rename and calls the new one through
    the module's ``__salt__``, with a docstring that says where it went."""
    for old, new in renamed.items():
        module_globals[old] = _alias(module_globals, f"{module}.{old}", new)


def _alias(module_globals, old, new):
    def alias(*args, **kwargs):
        log.warning("%s is now %s: the old name goes in the next release", old, new)
        return module_globals["__salt__"][new](*args, **kwargs)

    alias.__name__ = old.split(".")[1]
    alias.__module__ = module_globals["__name__"]  # the loader takes only functions of the module itself
    alias.__doc__ = f"""
    Renamed to ``{new}``; ``{old}`` answers until the next release.

    CLI Example:

    .. code-block:: bash

        salt '*' {new}
    """
    return alias
