"""The Messages API (`POST /v1/messages`), the provider's side.

`encode_request` builds the body the provider sends (and says which tool, if
any, carries structured output); `decode_response` reads the answer. (The
fake server's inverses live in `stagefx.testing._anthropic_codec`.)
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Final, cast

from stagefx._core.content import (
    ContentPart,
    ImageContent,
    MultimodalContent,
    TextContent,
)
from stagefx._core.conversation import ModelInput, ModelOutput, ModelToolRequest, TokenUsage
from stagefx._core.request import ModelFailure, ModelRequest
from stagefx._model.body import MalformedBody, items, mapping, text, token_count
from stagefx._model.content_text import part_text
from stagefx.anthropic._errors import body_failure
from stagefx.anthropic._wire import (
    JSON,
    OutputTool,
    answer_text,
    arguments_of,
    is_thinking,
    output_tool,
    thinking_blocks,
    thinking_data,
    tool_input,
)

__all__ = ["decode_response", "encode_request", "usage_of"]


def _image(image: ImageContent) -> JSON:
    if image.url is not None:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    assert image.data is not None  # ImageContent holds exactly one of the two
    return {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": image.mime_type,
            "data": base64.b64encode(image.data).decode(),
        },
    }


def _blocks(content: MultimodalContent, *, assistant: bool) -> list[JSON]:
    """Content as blocks: images as image blocks (user turns only), text as
    text blocks. Empty text is never sent: the API refuses an empty text block."""
    blocks: list[JSON] = []
    for part in content.parts:
        if isinstance(part, ImageContent):
            if not assistant:
                blocks.append(_image(part))
        elif said := part_text(part):
            if blocks and blocks[-1].get("type") == "text" and "text" in blocks[-1]:
                blocks[-1] = {"type": "text", "text": f"{blocks[-1]['text']}{said}"}
            else:
                blocks.append({"type": "text", "text": said})
    return blocks


def _tool_result(identifier: str, content: MultimodalContent, error: bool) -> JSON:
    block: JSON = {"type": "tool_result", "tool_use_id": identifier}
    said = _blocks(content, assistant=False)
    if said and all(item.get("type") == "text" for item in said):
        block["content"] = "".join(str(item["text"]) for item in said)
    elif said:
        block["content"] = said
    if error:
        block["is_error"] = True
    return block


def _messages(request: ModelRequest) -> list[JSON]:
    """The conversation as alternating turns: a turn of the same role as the
    one before joins it (the API asks for alternation); turns left empty are
    dropped. A model's thinking blocks (kept in its `provider_data`) go back
    unchanged, first in its turn; its tool calls are `tool_use` blocks;
    their answers, `tool_result` blocks first in the next user turn."""
    messages: list[JSON] = []
    for turn in request.context:
        if isinstance(turn, ModelInput):
            role = "user"
            blocks = [
                _tool_result(response.identifier, response.content, response.error)
                for response in turn.tool_responses
            ]
            blocks.extend(_blocks(turn.content, assistant=False))
        else:
            role = "assistant"
            blocks = thinking_blocks(turn)
            blocks.extend(_blocks(turn.content, assistant=True))
            blocks.extend(
                {
                    "type": "tool_use",
                    "id": call.identifier,
                    "name": call.tool,
                    "input": tool_input(call.arguments),
                }
                for call in turn.tool_requests
            )
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            held = cast("list[JSON]", messages[-1]["content"])
            messages[-1] = {"role": role, "content": [*held, *blocks]}
        else:
            messages.append({"role": role, "content": blocks})
    return messages


def _thinking(options: Mapping[str, object]) -> bool:
    thinking = options.get("thinking")
    if not isinstance(thinking, Mapping):
        return False
    return cast("Mapping[str, object]", thinking).get("type") in ("enabled", "adaptive")


def encode_request(
    request: ModelRequest, model: str, options: Mapping[str, object]
) -> tuple[JSON, OutputTool | None]:
    """The JSON body for `request`, and the tool that carries its structured
    output (None for free text); `options` (config, then stage extras) are
    merged last.

    Structured output (`output=` a type or "json") is asked as Anthropic
    documents it for this API: a tool whose `input_schema` is the output's
    schema, which the model is made to call (`tool_choice` names it, or
    `any` when the request has tools of its own, or `auto` with extended
    thinking, which allows no other choice); its input is the answer.
    """
    body: JSON = {"model": model, "messages": _messages(request)}
    if request.instructions:
        body["system"] = request.instructions
    tools: list[JSON] = [
        {
            "name": spec.name,
            "description": spec.description,
            "input_schema": {"type": "object", **spec.parameters},
        }
        for spec in request.tools
    ]
    answer = output_tool(request.output, (spec.name for spec in request.tools))
    if answer is not None:
        tools.append(
            {
                "name": answer.name,
                "description": answer.description,
                "input_schema": answer.input_schema,
            }
        )
        if _thinking(options):
            body["tool_choice"] = {"type": "auto"}
        elif request.tools:
            body["tool_choice"] = {"type": "any"}
        else:
            body["tool_choice"] = {"type": "tool", "name": answer.name}
    if tools:
        body["tools"] = tools
    body.update(options)
    return body, answer


FINISH: Final[Mapping[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
}
"""Anthropic's `stop_reason`s in the finish reasons the other providers give;
any other (`pause_turn`) is kept as it is."""


def usage_of(usage: object, model: str) -> TokenUsage:
    """Tokens from a `usage` object: input counts what was read from the cache
    and written to it too (`cache_read_input_tokens`,
    `cache_creation_input_tokens`), as all of it was processed."""
    counts: Mapping[str, object] = (
        cast("Mapping[str, object]", usage) if isinstance(usage, Mapping) else {}
    )
    return TokenUsage(
        model=model,
        input_tokens=token_count(counts.get("input_tokens"))
        + token_count(counts.get("cache_read_input_tokens"))
        + token_count(counts.get("cache_creation_input_tokens")),
        output_tokens=token_count(counts.get("output_tokens")),
    )


def decode_response(
    body: object, model: str, tool: OutputTool | None, streamed_answer: str | None = None
) -> ModelOutput | ModelFailure:
    """A `ModelOutput` from a message body, a `ModelFailure` for an error
    body or a refusal, or `MalformedBody` if it is not a message at all.

    Text blocks are the content; thinking blocks are kept, as they came and
    in order, in its `provider_data` (see `stagefx.anthropic._wire.PROVIDER`);
    `tool_use` blocks are tool requests,
    except a call of the output `tool`, whose input is the answer's text (as
    JSON; `streamed_answer` is that JSON as it was streamed, used as it is).
    `stop_reason` `refusal` is `refused`; `max_tokens` with no output is
    `invalid_request` (the limit left no room), a full context window with
    no output `context_too_long`.
    """
    message = mapping(body, "message")
    if message.get("type") == "error":
        return body_failure(message, "the message failed")
    stop = message.get("stop_reason")
    if stop is not None and not isinstance(stop, str):
        raise MalformedBody(f"expected text at stop_reason, got {type(stop).__name__}")
    if stop == "refusal":
        return ModelFailure("refused", "the model refused to answer (stop_reason: refusal)")
    parts: list[ContentPart] = []
    thinking: list[Mapping[str, object]] = []
    calls: list[ModelToolRequest] = []
    answered: str | None = None
    for index, raw in enumerate(items(message.get("content"), "content")):
        block = mapping(raw, f"content[{index}]")
        kind = block.get("type")
        if kind == "text":
            said = text(block.get("text"), f"content[{index}].text")
            if said:
                parts.append(TextContent(said))
        elif is_thinking(block):
            thinking.append(block)
        elif kind == "tool_use":
            name = text(block.get("name"), f"content[{index}].name")
            if tool is not None and name == tool.name:
                given = (
                    streamed_answer if streamed_answer is not None and not tool.wrapped else None
                )
                answered = given if given is not None else answer_text(tool, block.get("input"))
            else:
                identifier = text(block.get("id"), f"content[{index}].id")
                calls.append(ModelToolRequest(identifier, name, arguments_of(block.get("input"))))
    if answered is not None and not calls:
        # The answer is the output tool's input: text said beside it is not.
        parts = [TextContent(answered)]
    said_anything = bool(parts or calls)
    if not said_anything and stop == "max_tokens":
        return ModelFailure(
            "invalid_request", "the message reached max_tokens before any output: raise it"
        )
    if not said_anything and stop == "model_context_window_exceeded":
        return ModelFailure("context_too_long", "the context window was full before any output")
    finish = "tool_calls" if calls else FINISH.get(stop, stop) if stop is not None else None
    if answered is not None and not calls and stop == "tool_use":
        finish = "stop"
    answered_by = message.get("model")
    return ModelOutput(
        MultimodalContent(tuple(parts)),
        tuple(calls),
        usage=usage_of(
            message.get("usage"),
            answered_by if isinstance(answered_by, str) and answered_by else model,
        ),
        finish_reason=finish,
        provider_data=thinking_data(thinking),
    )
