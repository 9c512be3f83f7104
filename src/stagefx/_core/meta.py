"""StageMeta: what a stage is called and what it does (routers and traces read it).

Its own module so nodes (the router hands it to a routing function) can use it
without importing the Stage facade.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias, cast, final

import attrs

__all__ = ["AttributeValue", "MetaInput", "StageMeta"]

AttributeValue: TypeAlias = str | int | float | bool
"""A scalar that labels a stage: a meta attribute, a span attribute, a `describe()` detail."""


def _tags(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError(f"tags must be an iterable of str, not a str ({value!r})")
    tags = tuple(value)
    for tag in cast("tuple[object, ...]", tags):  # callers may not have typed theirs
        if not isinstance(tag, str):
            raise TypeError(f"tags must be str, got {type(tag).__name__}")
    return tags


@final
@attrs.frozen(slots=True)
class StageMeta:
    """What a stage is called and what it does; routers and traces read it.

    Example: `StageMeta(name="summary", description="A brief summary", tags=("fast",))`
    """

    name: str | None = None
    description: str | None = None
    values: Mapping[str, AttributeValue] = attrs.field(factory=dict)  # pyright: ignore[reportUnknownVariableType]  # it reads factory=dict as dict[Unknown, Unknown]; the annotation is the type
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tags)

    def merged_with(self, other: StageMeta) -> StageMeta:
        """This meta updated by what `other` sets (its name, description and
        tags replace these when given; values are added)."""
        return StageMeta(
            name=self.name if other.name is None else other.name,
            description=self.description if other.description is None else other.description,
            values={**self.values, **other.values},
            tags=other.tags or self.tags,
        )

    @classmethod
    def of(cls, meta: MetaInput) -> StageMeta:
        """`meta=` as constructors take it: a `StageMeta`, a mapping of
        name/description/tags and other values, or None."""
        if meta is None:
            return cls()
        if isinstance(meta, StageMeta):
            return meta
        if not isinstance(cast(object, meta), Mapping):  # callers may not have typed theirs
            raise TypeError(f"meta must be a StageMeta, a mapping or None, got {meta!r}")
        values = dict(meta)
        name = values.pop("name", None)
        description = values.pop("description", None)
        tags = values.pop("tags", ())
        if name is not None and not isinstance(name, str):
            raise TypeError(f"meta name must be a str, got {type(name).__name__}")
        if description is not None and not isinstance(description, str):
            raise TypeError(f"meta description must be a str, got {type(description).__name__}")
        if not isinstance(tags, Iterable):
            raise TypeError(f"meta tags must be an iterable of str, got {type(tags).__name__}")
        for key, value in values.items():
            if not isinstance(value, str | int | float | bool):
                raise TypeError(
                    f"meta value {key!r} must be str, int, float or bool, got {value!r}"
                )
        return cls(
            name,
            description,
            cast(dict[str, AttributeValue], values),
            _tags(cast("Iterable[str]", tags)),  # its items are checked there
        )


MetaInput: TypeAlias = StageMeta | Mapping[str, object] | None
"""What `meta=` accepts: a `StageMeta`, a mapping (`name`, `description`,
`tags` and other values), or None."""
