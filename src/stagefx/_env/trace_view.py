"""A finished trace as a tree in the terminal: timings, usage and failures (rich)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.tree import Tree

from stagefx._env.tracing import SpanRecord

__all__ = ["format_trace", "trace_tree"]

_OUTCOME_STYLE = {"success": "green", "failure": "bold red", "cancelled": "yellow"}


def _label(span: SpanRecord) -> str:
    style = _OUTCOME_STYLE.get(span.outcome, "white")
    text = f"[bold]{span.name}[/bold] [dim]{span.duration * 1000:.1f} ms[/dim]"
    tokens = ""
    if "input_tokens" in span.attributes:
        tokens = (
            f" [cyan]{span.attributes.get('model')}: {span.attributes['input_tokens']} in / "
            f"{span.attributes.get('output_tokens', 0)} out[/cyan]"
        )
    shown = {
        key: value
        for key, value in span.attributes.items()
        if key not in ("model", "input_tokens", "output_tokens")
    }
    extras = f" [dim]{', '.join(f'{k}={v}' for k, v in shown.items())}[/dim]" if shown else ""
    verdict = f" [{style}]{span.outcome}[/{style}]"
    error = f" [red]{span.error}[/red]" if span.error else ""
    return f"{text}{tokens}{extras}{verdict}{error}"


def trace_tree(spans: Sequence[SpanRecord], title: str = "trace") -> Tree:
    """The spans as a rich `Tree`: children under parents, in start order."""
    root = Tree(f"[bold]{title}[/bold]")
    by_parent: dict[int | None, list[SpanRecord]] = {}
    known = {span.span_id for span in spans}
    for span in sorted(spans, key=lambda span: (span.start, span.span_id)):
        parent = span.parent_id if span.parent_id in known else None
        by_parent.setdefault(parent, []).append(span)
    pending: list[tuple[Tree, SpanRecord]] = [(root, span) for span in by_parent.get(None, [])]
    pending.reverse()
    while pending:
        parent_tree, span = pending.pop()
        branch = parent_tree.add(_label(span))
        children = by_parent.get(span.span_id, [])
        pending.extend((branch, child) for child in reversed(children))
    return root


def format_trace(spans: Sequence[SpanRecord], title: str = "trace", *, color: bool = False) -> str:
    """The trace tree as text (ANSI colours only if `color`)."""
    console = Console(record=True, width=120, color_system="standard" if color else None)
    with console.capture() as captured:
        console.print(trace_tree(spans, title))
    return captured.get()
