"""The vocabulary every layer speaks: the immutable values a pipeline carries
(content, conversation, state, usage, a model call's request, failures), the
secret policy, schemas, and async iteration safe to leave early.

Imports nothing of stagefx outside this folder.
"""
