"""Serialization: the one typed, canonical JSON encoding of requests, answers
and states, used by cassettes, durable steps and request keys alike.

May import `_core`.
"""
