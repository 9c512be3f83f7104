"""Public names report their public module, as httpx does for its re-exports."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

__all__ = ["publish"]


def publish(module: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Set `__module__` to `module` on every class and function among `names`
    (aliases and instances keep theirs), so reprs, docs and pickles name the
    public path, not the private module a name is defined in."""
    for name in names:
        value = namespace[name]
        if isinstance(value, type) or (callable(value) and hasattr(value, "__code__")):
            with contextlib.suppress(AttributeError, TypeError):  # builtins keep theirs
                value.__module__ = module
