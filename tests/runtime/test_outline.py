"""describe() and to_mermaid(): a pipeline's shape without running it."""

from __future__ import annotations

from stagefx import Stage, StageState, stage, tool
from stagefx._runtime.outline import StageNode
from tests.helpers import ROOT, keep_first


@tool
async def lookup(query: str) -> str:
    """Look something up."""
    return query


@stage
async def custom(*, state: StageState) -> StageState:
    return state


def every_combinator() -> Stage:
    described = Stage.completion("a").with_meta(name="a", description="route a")
    return Stage.sequence(
        Stage.predefined("hi", "hello"),
        Stage.transform_result(lambda content: content),
        Stage.transform_context(lambda context: context),
        Stage.trim_context(limit=4),
        Stage.strip_context_tools(),
        Stage.prompting_completion(lambda: "q", tools=[lookup]),
        Stage.loopback_completion(),
        Stage.result_completion(output="json"),
        Stage.loop(custom, condition=lambda *, state, iteration: False, max_iterations=3),
        Stage.concurrent(Stage.noop, custom, merge=keep_first, concurrent_tasks=2),
        Stage.router(described, Stage.noop.with_meta(name="b", description="route b")),
        custom.when(True, alternative=Stage.noop)
        .cached(limit=5, expiration=60)
        .with_retry(limit=2)
        .with_fallback(Stage.noop)
        .with_timeout(30),
        custom.with_volatile_context().with_volatile_tools_context(),
        custom.ignore_result().extend_result().traced(label="custom"),
    ).with_meta(name="everything")


EXPECTED = """\
flowchart TD
    n0["sequence: everything"]
    n0 -->|1| n1
    n0 -->|2| n2
    n0 -->|3| n3
    n0 -->|4| n4
    n0 -->|5| n5
    n0 -->|6| n6
    n0 -->|7| n7
    n0 -->|8| n8
    n0 -->|9| n9
    n0 -->|10| n10
    n0 -->|11| n11
    n0 -->|12| n12
    n0 -->|13| n13
    n0 -->|14| n14
    n1["predefined"]
    n2["transform_result"]
    n3["transform_context"]
    n4["trim_context (limit=4)"]
    n5["strip_context_tools"]
    n6["prompting_completion (tools=lookup)"]
    n7["loopback_completion"]
    n8["result_completion (output=json)"]
    n9["loop (mode=post_check, max_iterations=3)"]
    n9 -->|1| n15
    n15["stage: custom"]
    n10["concurrent (concurrent_tasks=2)"]
    n10 -->|1| n16
    n10 -->|2| n17
    n16["noop"]
    n17["stage: custom"]
    n11["router (routing=model)"]
    n11 -->|1| n18
    n11 -->|2| n19
    n18["completion: a"]
    n19["noop: b"]
    n12["timeout (seconds=30)"]
    n12 --> n20
    n20["fallback"]
    n20 --> n21
    n20 --> n22
    n21["retry (limit=2)"]
    n21 --> n23
    n23["cached (limit=5, expiration=60)"]
    n23 --> n24
    n24["when (condition=True)"]
    n24 --> n25
    n24 --> n26
    n25["stage: custom"]
    n26["noop"]
    n22["noop"]
    n13["volatile_tools_context"]
    n13 --> n27
    n27["volatile_context"]
    n27 --> n28
    n28["stage: custom"]
    n14["traced (label=custom)"]
    n14 --> n29
    n29["extend_result"]
    n29 --> n30
    n30["ignore_result"]
    n30 --> n31
    n31["stage: custom"]"""


def test_every_combinator_shows_in_the_mermaid_flowchart() -> None:
    assert every_combinator().to_mermaid() == EXPECTED


def test_nested_sequences_are_described_flat_like_they_run() -> None:
    inner = Stage.sequence(custom, Stage.sequence(custom, Stage.noop))
    assert Stage.sequence(inner, custom).describe() == StageNode(
        "sequence", children=(custom.describe(), custom.describe(), custom.describe())
    )
    named = Stage.sequence(custom, custom).with_meta(name="pair")
    assert Stage.sequence(named, custom).describe().children[0].name == "pair"


def test_the_docs_show_the_current_diagram_of_the_end_to_end_example() -> None:
    from examples.document_pipeline import pipeline

    page = (ROOT / "docs" / "pipeline-diagram.md").read_text()
    assert f"```mermaid\n{pipeline('document').to_mermaid()}\n```" in page
