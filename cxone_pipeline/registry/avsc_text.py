"""Schema files as people keep them: one field per line, and edits that leave the other lines
of a hand-written file untouched, so a proposed change reads as a small diff."""

from __future__ import annotations

import json
from typing import Any

LINE_WIDTH = 100
_INDENT = "    "


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _field_text(value: Any, indent: str) -> str:
    """`value` on one line when it fits, else its members one per line, each the same way."""
    text = _compact(value)
    if (
        len(indent) + len(text) + 1 <= LINE_WIDTH
        or not isinstance(value, (dict, list))
        or not value
    ):
        return text
    inner = indent + "  "
    if isinstance(value, dict):
        members = [f"{_compact(k)}: {_field_text(v, inner)}" for k, v in value.items()]
        opening, closing = "{", "}"
    else:
        members = [_field_text(v, inner) for v in value]
        opening, closing = "[", "]"
    return opening + "\n" + ",\n".join(inner + m for m in members) + "\n" + indent + closing


def format_schema(document: dict[str, Any]) -> str:
    """A record schema with its top-level attributes first and one field per line."""
    lines = []
    for key, value in document.items():
        if key != "fields":
            lines.append(f"  {_compact(key)}: {_compact(value)}")
    fields = ",\n".join(_INDENT + _field_text(f, _INDENT) for f in document.get("fields", []))
    lines.append(f'  "fields": [\n{fields}\n  ]')
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _field_spans(text: str) -> list[tuple[int, int]] | None:
    """Where each element of the top-level "fields" array starts and ends in `text`; None when
    the text is not one JSON object with such an array."""
    decoder = json.JSONDecoder()

    def skip(index: int) -> int:
        while index < len(text) and text[index] in " \t\r\n":
            index += 1
        return index

    index = skip(0)
    if text[index : index + 1] != "{":
        return None
    index = skip(index + 1)
    while index < len(text) and text[index] != "}":
        key, index = decoder.raw_decode(text, index)
        index = skip(index)
        if text[index : index + 1] != ":":
            return None
        index = skip(index + 1)
        if key == "fields" and text[index : index + 1] == "[":
            spans = []
            index = skip(index + 1)
            while text[index : index + 1] != "]":
                _, end = decoder.raw_decode(text, index)
                spans.append((index, end))
                index = skip(end)
                if text[index : index + 1] == ",":
                    index = skip(index + 1)
            return spans
        _, index = decoder.raw_decode(text, index)
        index = skip(index)
        if text[index : index + 1] == ",":
            index = skip(index + 1)
    return None


def edit_fields(text: str, document: dict[str, Any]) -> str:
    """`text` (a schema file) changed to `document`, whose fields are the file's fields, some
    edited, then new ones: only edited and new fields are rewritten. A file this cannot edit in
    place (other attributes changed, fields removed, an unusual layout) is formatted anew."""
    try:
        original = json.loads(text)
        spans = _field_spans(text)
    except ValueError:
        return format_schema(document)
    old_fields, new_fields = original.get("fields", []), document.get("fields", [])
    attributes = {k: v for k, v in original.items() if k != "fields"}
    if (
        not spans
        or len(spans) != len(old_fields)
        or len(new_fields) < len(old_fields)
        or attributes != {k: v for k, v in document.items() if k != "fields"}
    ):
        return format_schema(document)
    line_start = text.rfind("\n", 0, spans[-1][0]) + 1
    indent = text[line_start : spans[-1][0]]
    indent = indent if indent and not indent.strip() else _INDENT
    pieces, position = [], 0
    for (start, end), old, new in zip(spans, old_fields, new_fields, strict=False):
        pieces += [
            text[position:start],
            text[start:end] if old == new else _field_text(new, indent),
        ]
        position = end
    pieces += [",\n" + indent + _field_text(f, indent) for f in new_fields[len(spans) :]]
    edited = "".join(pieces) + text[position:]
    try:
        if json.loads(edited) == document:
            return edited
    except ValueError:
        pass
    return format_schema(document)
