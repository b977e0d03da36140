"""Sender-chosen strings (field names, schema versions, event ids) made fit for Dagster's UI.

Payloads decide these strings, so they are bounded in length and in number, stripped of
control and formatting characters, and shown as inline code so Markdown never turns them
into links or images in check descriptions.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping

MAX_NAME_CHARS = 64
MAX_NAMES = 20
ELLIPSIS = "…"


def plain(text: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """`text` without control, format (bidi overrides, zero-width) or unassigned characters,
    cut to `max_chars` with a trailing ellipsis."""
    cleaned = "".join(
        " " if ch in "\t\n\r" else ch
        for ch in text[: max_chars * 4]
        if ch in "\t\n\r" or not unicodedata.category(ch).startswith("C")
    )
    if len(cleaned) > max_chars or len(text) > max_chars * 4:
        return cleaned[: max_chars - 1] + ELLIPSIS
    return cleaned


def code(text: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """`text` as a Markdown code span: nothing inside is rendered (no links, images, HTML)."""
    return "`" + plain(text, max_chars).replace("`", "'") + "`"


def more(n: int) -> str:
    return f"{ELLIPSIS} {n:,} more"


def top_counts(counts: Mapping[str, int], limit: int = MAX_NAMES) -> dict[str, int]:
    """The `limit` largest counts (ties by name) under their `plain` names, plus one
    `"… N more"` entry that sums the rest: metadata of bounded size whatever senders send."""
    shown: dict[str, int] = {}
    for name, n in _ranked(counts, limit):
        key = plain(name)
        shown[key] = shown.get(key, 0) + n
    rest = len(counts) - limit
    if rest > 0:
        shown[more(rest)] = sum(counts.values()) - sum(n for _, n in _ranked(counts, limit))
    return shown


def _ranked(counts: Mapping[str, int], limit: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def counts_text(counts: Mapping[str, int], limit: int = MAX_NAMES) -> str:
    """Counts for a Markdown sentence: "`a` (3), `b` (1), … 7 more (9)"."""
    ranked = _ranked(counts, limit)
    parts = [f"{code(name)} ({n:,})" for name, n in ranked]
    rest = len(counts) - len(ranked)
    if rest:
        parts.append(f"{more(rest)} ({sum(counts.values()) - sum(n for _, n in ranked):,})")
    return ", ".join(parts)


def names_text(names: Iterable[str], limit: int = MAX_NAMES) -> str:
    """Sorted names for a Markdown sentence, as code spans, with a "… N more" tail."""
    ordered = sorted(names)
    parts = [code(name) for name in ordered[:limit]]
    if len(ordered) > limit:
        parts.append(more(len(ordered) - limit))
    return ", ".join(parts)
