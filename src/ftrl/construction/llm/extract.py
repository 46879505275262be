"""Pulling JSON and Python code out of free-form model replies.

Models wrap answers in prose, ```json fences and <think> blocks, and write JSON with trailing commas, single
quotes, comments or Python constants. `extract_json` tries the strict parse first and repairs only what is
unambiguous, outside string literals; nothing is ever evaluated.
"""

from __future__ import annotations

import json
import re
from typing import Any

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
#: Only blanks and comments stand between a comma and a closing bracket: the comma is a trailing one.
_CLOSES_NEXT = re.compile(r"(?:\s|//[^\n]*|#[^\n]*)*[}\]]")
_PY_CONSTANTS = {"True": "true", "False": "false", "None": "null"}


class MalformedOutput(ValueError):
    """The reply holds no usable JSON object or code block; the message says what was missing."""


def strip_thinking(text: str) -> str:
    """Drop reasoning blocks (`<think>...</think>`, also an unclosed leading one) that precede the answer."""
    text = _THINK.sub("", text)
    if "</think>" in text:
        text = text.split("</think>", 1)[1]
    return text.strip()


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """`(language, body)` of every ``` fenced block, in order."""
    return [(lang.lower(), body) for lang, body in _FENCE.findall(text)]


def drop_code_blocks(text: str) -> str:
    """The reply without its ```python blocks, so dict literals in code are not mistaken for the JSON answer."""
    return _FENCE.sub(lambda m: "" if m.group(1).lower() in ("python", "py") else m.group(0), text)


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in a reply, from a fence, the bare text, or the first balanced `{...}`."""
    text = strip_thinking(text)
    candidates = [body for lang, body in fenced_blocks(text) if lang in ("json", "json5", "")]
    candidates.append(text)
    candidates += _balanced_objects(text)
    for candidate in candidates:
        value = _loads_lenient(candidate.strip())
        if isinstance(value, dict):
            return value
    snippet = " ".join(text.split())[:80]
    raise MalformedOutput(f"no JSON object found in the reply (starts {snippet!r})" if snippet else "empty reply")


def extract_code(text: str) -> str:
    """The first ```python fenced block of a reply (an unlabelled fence that starts with `def` also counts)."""
    for lang, body in fenced_blocks(strip_thinking(text)):
        if lang in ("python", "py") or (not lang and body.lstrip().startswith(("def ", "import ", "from "))):
            return body.strip("\n") + "\n"
    raise MalformedOutput("no ```python code block in the reply")


def _loads_lenient(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return json.loads(_repair(text))
    except (json.JSONDecodeError, ValueError):
        return None


def _balanced_objects(text: str) -> list[str]:
    """Every top-level `{...}` span, found with string literals (either quote) skipped."""
    spans, depth, start, quote, index = [], 0, 0, "", 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'" and depth:
            quote = char
        elif char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                spans.append(text[start : index + 1])
        index += 1
    return spans


def _repair(text: str) -> str:
    """Rewrite near-JSON into JSON: single-quoted strings, trailing commas, `//`/`#` comments, Python constants."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char in "\"'":
            literal, index = _read_string(text, index)
            out.append(json.dumps(literal, ensure_ascii=False))
            continue
        if char == "/" and text.startswith("//", index) or char == "#":
            while index < len(text) and text[index] != "\n":
                index += 1
            continue
        if char == "," and _CLOSES_NEXT.match(text, index + 1):
            index += 1
            continue
        if char.isalpha() or char == "_":
            word = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[index:]).group(0)  # type: ignore[union-attr]
            out.append(_PY_CONSTANTS.get(word, word))
            index += len(word)
            continue
        out.append(char)
        index += 1
    return "".join(out)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"', "'": "'"}


def _read_string(text: str, start: int) -> tuple[str, int]:
    """Decode the string literal opening at `start` (either quote); returns its value and the index after it."""
    quote, index, chars = text[start], start + 1, []
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            escape = text[index + 1]
            if escape == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[index + 2 : index + 6]):
                chars.append(chr(int(text[index + 2 : index + 6], 16)))
                index += 6
                continue
            chars.append(_ESCAPES.get(escape, "\\" + escape))
            index += 2
            continue
        if char == quote:
            return "".join(chars), index + 1
        chars.append(char)
        index += 1
    raise ValueError("unterminated string literal")
