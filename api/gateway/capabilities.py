"""What a chat request needs of the model beyond text, read from its body: a routed request goes
only to models whose registry entry declares each (`ModelSpec.capabilities`)."""
from __future__ import annotations

from typing import Any

from pickwise.api.gateway.prompt import request_tools
from pickwise.registry.schema import CAPABILITIES

# content part types (OpenAI chat) that carry an image, audio or a file rather than text
_PART_NEEDS = {"image_url": "vision", "input_audio": "audio", "file": "files"}


def _message_needs(message: Any) -> set[str]:
    if not isinstance(message, dict):
        return set()
    needs = set()
    if message.get("role") in ("tool", "function") or message.get("tool_calls") or message.get("function_call"):
        needs.add("tools")  # a conversation that holds tool calls needs a model that reads them
    if message.get("audio") is not None:
        needs.add("audio")  # an assistant's earlier audio answer, referred to by id
    content = message.get("content")
    if isinstance(content, list):
        needs.update(_PART_NEEDS[p["type"]] for p in content if isinstance(p, dict) and p.get("type") in _PART_NEEDS)
    return needs


def required_capabilities(body: dict[str, Any]) -> list[str]:
    """The capabilities a chat request needs, in the registry's order: tools (tool definitions, or tool
    calls in the conversation), vision (image parts), audio (audio parts, or an audio answer asked
    for), json_schema (`response_format` of type json_schema; json_object is plain JSON mode), files
    (file parts)."""
    needs: set[str] = set()
    if request_tools(body):
        needs.add("tools")
    for message in body.get("messages") or ():
        needs |= _message_needs(message)
    modalities = body.get("modalities")
    if body.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        needs.add("audio")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        needs.add("json_schema")
    return [c for c in CAPABILITIES if c in needs]
