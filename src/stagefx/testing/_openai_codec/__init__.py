"""The fake server's side of the OpenAI wire formats.

The provider (`stagefx.openai`) encodes requests and decodes responses; these
modules are the inverses a server needs: `decode_request` turns a body back into
the `ModelRequest` the provider encoded, `encode_response` / `encode_refusal`
answer as OpenAI would. Pieces both sides share live in `stagefx.openai._wire`.
"""
