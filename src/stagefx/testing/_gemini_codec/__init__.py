"""The fake server's side of the Gemini wire format: the inverses of
`stagefx.gemini._generate` (`decode_request`, `encode_response`, `encode_stream`,
`encode_error`). Pieces both sides share live in `stagefx.gemini._wire`."""
