"""The static shape of a pipeline: combinators and named stages, without running it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, final

import attrs

from stagefx._core.meta import AttributeValue

if TYPE_CHECKING:
    from stagefx._runtime.node import Node

__all__ = ["StageNode", "outline_of"]


@final
@attrs.frozen(slots=True)
class StageNode:
    """One stage in `Stage.describe()`'s tree.

    `kind` is the constructor or modifier ("completion", "sequence", "retry",
    ...), `name` the stage's `with_meta` name, `details` its settings, and
    `children` the stages it wraps or composes, in order.
    """

    kind: str
    name: str | None = None
    details: Mapping[str, AttributeValue] = attrs.field(factory=dict)  # pyright: ignore[reportUnknownVariableType]  # it reads factory=dict as dict[Unknown, Unknown]; the annotation is the type
    children: tuple[StageNode, ...] = ()

    @property
    def label(self) -> str:
        shown = self.kind if self.name is None else f"{self.kind}: {self.name}"
        if self.details:
            settings = ", ".join(f"{key}={value}" for key, value in self.details.items())
            shown = f"{shown} ({settings})"
        return shown

    def walk(self) -> Iterator[tuple[int, StageNode]]:
        """Every node with its depth, depth-first in order (iterative: any depth)."""
        pending: list[tuple[int, StageNode]] = [(0, self)]
        while pending:
            depth, node = pending.pop()
            yield depth, node
            pending.extend((depth + 1, child) for child in reversed(node.children))

    def render(self) -> str:
        """The tree as indented text."""
        return "\n".join(f"{'  ' * depth}{node.label}" for depth, node in self.walk())

    def to_mermaid(self) -> str:
        """The tree as a Mermaid flowchart; numbered edges give the order of children."""
        lines = ["flowchart TD"]
        numbers = itertools.count()
        pending: list[tuple[StageNode, str]] = [(self, f"n{next(numbers)}")]
        while pending:
            node, own = pending.pop()
            lines.append(f'    {own}["{_escape(node.label)}"]')
            children = [(child, f"n{next(numbers)}") for child in node.children]
            ordered = node.kind in ("sequence", "concurrent", "router", "loop")
            for position, (_, child_id) in enumerate(children, start=1):
                edge = f"-->|{position}|" if ordered else "-->"
                lines.append(f"    {own} {edge} {child_id}")
            pending.extend(reversed(children))
        return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", " ")


def outline_of(root: Node) -> StageNode:
    """The `StageNode` view of a node tree, built bottom-up without recursion.

    A `Named` node shows as its child under its name, not as a node of its own.
    """
    built: list[StageNode] = []
    pending: list[tuple[Node, bool]] = [(root, False)]
    while pending:
        node, expanded = pending.pop()
        children = node.children()
        if not expanded:
            pending.append((node, True))
            pending.extend((child, False) for child in reversed(children))
            continue
        first = len(built) - len(children)
        shown = tuple(built[first:])
        del built[first:]
        if node.kind == "named":
            built.append(attrs.evolve(shown[0], name=node.name))
        else:
            built.append(StageNode(node.kind, node.name, dict(node.details()), shown))
    return built[0]
