"""Images as OpenAI sends them back into `ImageContent`."""

from __future__ import annotations

import base64

from stagefx._core.content import ImageContent

__all__ = ["image_of"]


def image_of(url: str) -> ImageContent:
    """The inverse of `stagefx.openai._wire.image_url`: a data URL as bytes, else the URL."""
    if url.startswith("data:") and ";base64," in url:
        header, data = url[5:].split(";base64,", 1)
        return ImageContent.of_bytes(base64.b64decode(data), mime_type=header)
    return ImageContent.of_url(url)
