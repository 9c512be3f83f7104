"""The one typed, canonical JSON encoding of model requests, answers and stage
states, which cassettes, durable steps and request keys share.

Encoding gives plain JSON data; decoding checks every field and raises only
`CodecError`, naming the place (`request.context[1].output.usage`). Nothing is
pickled and no class is looked up by a name found in the data. The shapes
are described in docs/recording.md ("The cassette's JSON").

- `values`: JSON values, their checks, canonical bytes, where a fault sits
- `user_types`: the caller's own types, by pydantic (`types=`)
- `content`: content parts and conversation turns
- `calls`: requests and answers
- `states`: stage states

May import `_core`.
"""

from stagefx._codec.calls import (
    RequestEncoder,
    decode_answer,
    decode_answer_json,
    decode_request,
    encode_answer,
    encode_request,
)
from stagefx._codec.content import decode_content, encode_content
from stagefx._codec.states import decode_state, encode_state
from stagefx._codec.values import (
    CODEC_VERSION,
    JSON,
    CodecError,
    canonical,
    json_value,
    pretty,
)

__all__ = [
    "CODEC_VERSION",
    "JSON",
    "CodecError",
    "RequestEncoder",
    "canonical",
    "decode_answer",
    "decode_answer_json",
    "decode_content",
    "decode_request",
    "decode_state",
    "encode_answer",
    "encode_content",
    "encode_request",
    "encode_state",
    "json_value",
    "pretty",
]
