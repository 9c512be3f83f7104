"""The nodes a Stage's tree is made of: one frozen class per combinator, each
module a family, each node with its checks, its `describe()` details, its span
and the laws it obeys.

May import `_core`, `_env`, `_model`, `_codec` and `_runtime`'s `node`, `user_code`,
`outline`, `interpreter` and `equivalence` (what law checks share); never
another node module or the `Stage` facade.
"""
