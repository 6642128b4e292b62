"""What the predictor reads of a chat conversation, and how long the conversation is.

The predictor reads one prompt, at most `window` tokens of it (head and tail of a longer one). A
chat request is a list of messages; the question to route is the last user turn, so that turn is
read whole whenever it fits, and what room is left is filled with context: the system (or
developer) messages first, since they set the task, then the earlier turns from the most recent
back. A last turn longer than the window is read alone, cut by the predictor as any long prompt.
Context with no text by the front door's rule (`is_blank`: zero-width characters count as
whitespace) is left out: it would take room and give the predictor nothing.

Cost estimates and the context-window check need the whole conversation, not what the predictor
reads, so the token count is of every message's text, plus a few tokens per message for the chat
format (OpenAI's own counting adds 3 per message and 3 to prime the reply), plus what the model reads
beyond the text: the tool calls in the messages and the request's tool definitions, as JSON (a schema
can be thousands of tokens, and a server refuses a request over its window with a 400).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pickwise.registry import count_tokens_batch
from pickwise.registry.prompt_text import is_blank

DEFAULT_WINDOW = 126  # the shipped predictor's max_len (128) less [CLS] and [SEP]
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3
MIN_CONTEXT_TOKENS = 8  # less room than this adds nothing the predictor can use
SYSTEM_ROLES = ("system", "developer")


def message_text(message: Any) -> str:
    """The text of one message: a string content, or the text parts of a list content (images,
    audio and tool calls carry no text the predictor can read)."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _calls_text(message: Any) -> str:
    """A message's tool calls (or older function_call) as JSON: names and arguments the model reads."""
    if not isinstance(message, dict):
        return ""
    calls = [message[k] for k in ("tool_calls", "function_call") if message.get(k)]
    return json.dumps(calls, ensure_ascii=False) if calls else ""


def request_tools(body: dict[str, Any]) -> list:
    """A chat request's tool definitions: `tools`, and `functions` (their older form)."""
    return [t for key in ("tools", "functions") if isinstance(body.get(key), list) for t in body[key]]


def _cut(text: str, tokens: int, budget: int, keep_end: bool) -> str:
    """About `budget` tokens of `text` (which has `tokens`), from its start or its end, by characters
    in proportion: close enough, since the predictor cuts whatever still overflows."""
    if tokens <= budget:
        return text
    keep = max(0, len(text) * budget // max(tokens, 1))
    return text[len(text) - keep:] if keep_end else text[:keep]


def _total(messages: Sequence[Any], counts: Sequence[int], tools: Sequence[Any]) -> int:
    """The conversation's tokens from each message's text tokens, its tool calls and `tools`."""
    extra = [t for t in [_calls_text(m) for m in messages] + [json.dumps(tools, ensure_ascii=False) if tools else ""]
             if t]
    return sum(counts) + sum(count_tokens_batch(extra)) + TOKENS_PER_MESSAGE * len(counts) + REPLY_PRIMING_TOKENS


def conversation_tokens(messages: Sequence[Any], tools: Sequence[Any] = ()) -> int:
    """The token count of a chat request's messages and tool definitions (`request_tools`), as
    `routing_prompt` gives it."""
    return _total(messages, count_tokens_batch([message_text(m) for m in messages]), tools)


def routing_prompt(messages: Sequence[Any], window: int = DEFAULT_WINDOW, tools: Sequence[Any] = ()) -> tuple[str, int]:
    """(the prompt the predictor reads, the conversation's token count) for a chat request's messages
    and tool definitions (`request_tools`)."""
    texts = [message_text(m) for m in messages]
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    counts = count_tokens_batch(texts)
    total = _total(messages, counts, tools)
    users = [i for i, r in enumerate(roles) if r == "user"]
    last = users[-1] if users else len(messages) - 1
    if last < 0:
        return "", total
    prompt, room = texts[last], window - counts[last]
    if room < MIN_CONTEXT_TOKENS:
        return prompt, total
    systems = [i for i in range(last) if roles[i] in SYSTEM_ROLES and not is_blank(texts[i])]
    earlier = [i for i in reversed(range(last)) if roles[i] not in SYSTEM_ROLES and not is_blank(texts[i])]
    context: dict[int, str] = {}
    for i in systems + earlier:
        if room < MIN_CONTEXT_TOKENS:
            break
        # a system message's start says what the task is; an earlier turn's end leads into this one
        context[i] = _cut(texts[i], counts[i], room, keep_end=i not in systems)
        room -= min(counts[i], room)
    parts = [context[i] for i in sorted(context)] + [prompt]
    return "\n\n".join(parts), total
