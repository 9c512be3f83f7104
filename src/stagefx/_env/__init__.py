"""The reader environment a stage runs in (`Env`, `ctx`) and the providers
that arrive through it: the clock, the tracer and its spans, the sink of a
streamed run's events, cache stores and memories.

May import `_core`.
"""
