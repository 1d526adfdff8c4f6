"""The error types of the run contract, at the bottom of ``envs/``: this module imports nothing from ``envs``.

The adapters (gym, atari, dmc, minatar, ogbench, offline, workers, devices, ...) raise these; ``envs.runs``
re-exports them and its ``cli`` prints a ``UserError`` as one line ``error: ...`` with exit status 2.
"""

from __future__ import annotations

import importlib


class UserError(ValueError):
    """A mistake in the user's input: printed as one line, exit status 2, no traceback."""


class SpaceError(UserError, TypeError):
    """An env whose action or observation space this algorithm cannot take."""


class Diverged(UserError, FloatingPointError):
    """A non-finite loss or action: the run stops, what was written before stays."""


def require(module: str, flag: str, extra: str):
    """Import an optional dependency or fail with the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{flag} needs {module.split('.')[0]}: pip install -e '.[{extra}]'") from None


__all__ = ["Diverged", "SpaceError", "UserError", "require"]
