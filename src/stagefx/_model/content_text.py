"""Content as text, for the places of a provider's API that take only text."""

from __future__ import annotations

from stagefx._core.content import (
    ArtifactContent,
    ImageContent,
    MultimodalContent,
    ResourceContent,
    TextContent,
)

__all__ = ["part_text", "plain_text"]


def part_text(part: TextContent | ArtifactContent | ResourceContent) -> str:
    """A part's text; a resource as `[resource <uri>]`."""
    if isinstance(part, ResourceContent):
        return f"[resource {part.uri}]"
    return part.text


def plain_text(content: MultimodalContent) -> str:
    """Text of the content, images left out (for places that only take text)."""
    return "".join(part_text(part) for part in content.parts if not isinstance(part, ImageContent))
