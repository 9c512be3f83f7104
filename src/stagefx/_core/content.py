"""Multimodal content: the immutable values that flow into and out of models."""

from __future__ import annotations

import json
from typing import ClassVar, TypeAlias, TypeVar, final

import attrs

__all__ = [
    "ArtifactContent",
    "ContentElement",
    "ContentPart",
    "ImageContent",
    "MultimodalContent",
    "ResourceContent",
    "TextContent",
]

T = TypeVar("T")


@final
@attrs.frozen(slots=True)
class TextContent:
    """A piece of plain text."""

    text: str = attrs.field(validator=attrs.validators.instance_of(str))


def _check_image(instance: ImageContent, _: attrs.Attribute[str | None], __: str | None) -> None:
    if (instance.url is None) == (instance.data is None):
        raise ValueError("ImageContent needs exactly one of `url` or `data`")
    if instance.data is not None and not instance.mime_type:
        raise ValueError("ImageContent with `data` needs a `mime_type`, e.g. 'image/png'")


@final
@attrs.frozen(slots=True)
class ImageContent:
    """An image, either referenced by URL or carried as bytes with a MIME type."""

    url: str | None = None
    data: bytes | None = None
    mime_type: str | None = attrs.field(default=None, validator=_check_image)

    @classmethod
    def of_url(cls, url: str, *, mime_type: str | None = None) -> ImageContent:
        return cls(url=url, mime_type=mime_type)

    @classmethod
    def of_bytes(cls, data: bytes, *, mime_type: str) -> ImageContent:
        return cls(data=data, mime_type=mime_type)


def _render(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=jsonable, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def jsonable(value: object) -> object:
    if attrs.has(type(value)):
        return attrs.asdict(value)  # type: ignore[arg-type]  # attrs.has narrowed at runtime
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is not None:
        return {name: getattr(value, name) for name in fields}
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _rendered_value(artifact: ArtifactContent) -> str:
    """An artifact's default text: its value rendered."""
    return _render(artifact.value)


@final
@attrs.frozen(slots=True)
class ArtifactContent:
    """A structured value (parsed model output, tool data) with its text rendering.

    Downstream code reads the typed `value`; `as_string()` on the surrounding
    content still gives `text`.
    """

    value: object
    text: str = attrs.field(default=attrs.Factory(_rendered_value, takes_self=True))

    def __hash__(self) -> int:
        # Artifact values (dicts, lists) are often unhashable; the text identifies them.
        return hash((type(self.value), self.text))


@final
@attrs.frozen(slots=True)
class ResourceContent:
    """A reference to an external resource (a file, a document) by URI."""

    uri: str
    mime_type: str | None = None


ContentPart = TextContent | ImageContent | ArtifactContent | ResourceContent
"""One part of a `MultimodalContent`."""
_PARTS = (TextContent, ImageContent, ArtifactContent, ResourceContent)


@final
@attrs.frozen(slots=True)
class MultimodalContent:
    """An ordered, immutable sequence of content parts.

    `MultimodalContent.of("a", image, other_content)` flattens its arguments;
    `as_string()` concatenates the text of text and artifact parts.
    """

    parts: tuple[ContentPart, ...] = ()

    empty: ClassVar[MultimodalContent]

    @classmethod
    def of(cls, *elements: ContentElement) -> MultimodalContent:
        parts: list[ContentPart] = []
        for element in elements:
            if isinstance(element, MultimodalContent):
                parts.extend(element.parts)
            elif isinstance(element, str):
                parts.append(TextContent(element))
            elif isinstance(element, _PARTS):  # pyright: ignore[reportUnnecessaryIsInstance]  # callers may not have typed theirs; no cast: this runs for every result
                parts.append(element)
            else:
                raise TypeError(
                    "MultimodalContent.of takes str, content parts or MultimodalContent, "
                    f"not {type(element).__name__}"
                )
        return cls(tuple(parts))

    @property
    def is_empty(self) -> bool:
        return not self.parts

    def as_string(self) -> str:
        """The text of text and artifact parts, concatenated (images are left out).

        Example: `MultimodalContent.of("a", "b").as_string() == "ab"`.
        """
        return "".join(
            part.text for part in self.parts if isinstance(part, TextContent | ArtifactContent)
        )

    def extending(self, *elements: ContentElement) -> MultimodalContent:
        """This content followed by `elements`, as a new value."""
        return MultimodalContent.of(self, *elements)

    def texts(self) -> tuple[TextContent, ...]:
        """The text parts, in order."""
        return tuple(part for part in self.parts if isinstance(part, TextContent))

    def images(self) -> tuple[ImageContent, ...]:
        """The image parts, in order."""
        return tuple(part for part in self.parts if isinstance(part, ImageContent))

    def artifacts(self, kind: type[T]) -> tuple[T, ...]:
        """The artifact values that are instances of `kind`, in order."""
        return tuple(
            part.value
            for part in self.parts
            if isinstance(part, ArtifactContent) and isinstance(part.value, kind)
        )

    def artifact(self, kind: type[T]) -> T | None:
        """The first artifact value of type `kind`, if any."""
        found = self.artifacts(kind)
        return found[0] if found else None

    def __str__(self) -> str:
        return self.as_string()


MultimodalContent.empty = MultimodalContent()

ContentElement: TypeAlias = str | ContentPart | MultimodalContent
"""Anything `MultimodalContent.of` accepts."""
