"""Combinators: each module builds steps (see `_step`) from steps and callbacks."""
