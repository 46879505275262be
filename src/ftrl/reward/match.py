"""Deciding whether a tool output contains a gold sub-answer.

`answer_verify` is the reference matcher (bytedance/FTRL `Code/utils/utils.py`), used by default so rewards and
metrics are comparable with the paper. It is a plain substring test, which has two known loopholes that
`strict_verify` closes (opt-in, documented in docs/reward.md):

- short gold parts match inside unrelated text: `5` is found in `15` and `2025`, `no` in `Kenya`, `2` in `12`;
- an output that merely echoes the model's own argument (`Searching for Michel Barnier...`) gets credit
  although the tool produced nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Protocol


class Matcher(Protocol):
    """`(tool output, gold answer, parsed call arguments) -> solved?`; matchers may ignore the arguments."""

    def __call__(self, predict: Any, golden: str, arguments: Mapping[str, Any] | None = None) -> bool: ...


def normalize(text: str) -> str:
    """The reference normalisation: lower-case, commas removed (so `213,000` equals `213000`), stripped."""
    return text.lower().replace(",", "").strip()


def gold_parts(golden: str) -> list[str]:
    """A gold answer's parts: the reference splits on `", "` and each part must be found."""
    return [normalize(part) for part in golden.split(", ")]


def as_text(predict: Any) -> str:
    """A tool result as text the way the reference converts it (dict/list to JSON, anything else `str`)."""
    if type(predict) in (dict, list):
        return json.dumps(predict, ensure_ascii=False)
    return predict if type(predict) is str else str(predict)


def answer_verify(predict: Any, golden: str, arguments: Mapping[str, Any] | None = None) -> bool:
    """Reference matcher: every normalised gold part is a substring of the normalised output.

    `arguments` is accepted only so both matchers share one signature; the reference ignores them.
    """
    text = normalize(as_text(predict))
    return all(part in text for part in gold_parts(golden))


def strict_verify(predict: Any, golden: str, arguments: Mapping[str, Any] | None = None) -> bool:
    """Reference normalisation, but (a) parts match only as whole tokens and (b) echoed arguments do not count.

    (a) A part may not be preceded or followed by a letter, digit or `_`; a part that starts or ends with a
    digit may also not continue a decimal number (`5` is not in `15`, `2025`, `1.5` or `5.5`). An empty part
    never matches.
    (b) Every string or number leaf of `arguments`, normalised, is cut out of the output wherever it occurs as a
    whole token (longest first) before the parts are searched, so a gold part that appears in the output only
    because the call passed it in is not credited.
    """
    text = normalize(as_text(predict))
    for value in sorted(_argument_values(arguments), key=len, reverse=True):
        text = _token_pattern(value).sub(" ", text)
    return all(part and _token_pattern(part).search(text) for part in gold_parts(golden))


def _token_pattern(part: str) -> re.Pattern[str]:
    left = r"(?<!\w)" + (r"(?<!\d\.)" if part[0].isdigit() else "")
    right = r"(?!\w)" + (r"(?!\.\d)" if part[-1].isdigit() else "")
    return re.compile(left + re.escape(part) + right)


def _argument_values(arguments: Any) -> set[str]:
    """Normalised non-empty string and number leaves of parsed call arguments (booleans and nulls skipped)."""
    if isinstance(arguments, Mapping):
        return {value for item in arguments.values() for value in _argument_values(item)}
    if isinstance(arguments, list):
        return {value for item in arguments for value in _argument_values(item)}
    if isinstance(arguments, (str, int, float)) and not isinstance(arguments, bool):
        value = normalize(str(arguments))
        return {value} if value else set()
    return set()


MATCHERS: dict[str, Matcher] = {"reference": answer_verify, "strict": strict_verify}


def get_matcher(matcher: str | Matcher) -> Matcher:
    """A matcher by name (`reference`, `strict`); a callable is returned unchanged."""
    if callable(matcher):
        return matcher
    try:
        return MATCHERS[matcher]
    except KeyError:
        raise ValueError(f"unknown matcher {matcher!r}; known: {', '.join(MATCHERS)}") from None
