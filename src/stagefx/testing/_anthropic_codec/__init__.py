"""The Messages API, the fake server's side: requests back into `ModelRequest`s,
answers into message bodies and server-sent events (the inverses of
`stagefx.anthropic._messages`)."""
