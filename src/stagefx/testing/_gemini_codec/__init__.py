"""The fake server's side of the Gemini wire format: the inverses of
`stagefx.gemini._codec` (`decode_request`, `encode_response`, `encode_stream`,
`encode_error`). Pieces both sides share live in `stagefx.gemini._wire`."""

from stagefx.testing._gemini_codec._codec import (
    StreamChunk,
    decode_request,
    encode_blocked,
    encode_error,
    encode_response,
    encode_stream,
)

__all__ = [
    "StreamChunk",
    "decode_request",
    "encode_blocked",
    "encode_error",
    "encode_response",
    "encode_stream",
]
