"""The stage tree and the one interpreter that runs it: `Stage` (the typed
facade), the node vocabulary (`node`), one module per combinator family
(`nodes/`), the interpreter with its explicit stack, and the ways to run a
tree: once, over many inputs (`batch`), or as a stream of events.

May import `_core`, `_env`, `_codec` and `_model`; none of them imports it.
"""
