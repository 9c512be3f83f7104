"""The model boundary: what a generative model is (`GenerativeModel`), the one
path every model and tool call takes with its layers (`boundary`), tools and
the toolbox, the `output=` parsers, rate limits, and what every provider
reads from an untrusted server (bodies, HTTP hints).

May import `_core`, `_env` and `_codec`.
"""
