"""Deciding whether a tool output contains a gold sub-answer, and whether a final answer states the gold answer.

`answer_verify` is the reference matcher (bytedance/FTRL `Code/utils/utils.py`), used by default so rewards and
metrics are comparable with the paper. It is a plain substring test, with known ways to game it that
`strict_verify` closes (opt-in, documented in docs/reward.md):

- short gold parts match inside unrelated text: `5` is found in `15` and `2025`, `no` in `Kenya`, `yes` in
  `Yesterday`, `2` in `12`;
- an output that merely echoes the model's own argument (`Searching for Michel Barnier...`) gets credit
  although the tool produced nothing;
- a final answer that lists many candidates (`0 1 2 ... 2999`) contains the gold one.
"""

from __future__ import annotations

import functools
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
    return _contains_parts(text, gold_parts(golden))


def _contains_parts(text: str, parts: list[str]) -> bool:
    """Every part occurs in normalised `text` as a whole token; a number part as a number of equal value
    (`5` matches `5.0` and `5.00`, never `15` or `5.5`)."""
    numbers: set[float] | None = None
    for part in parts:
        if not part:
            return False
        value = _as_number(part)
        if value is None:
            if not _token_pattern(part).search(text):
                return False
            continue
        if numbers is None:
            numbers = _numbers(text)
        if value not in numbers:
            return False
    return True


#: A number as a token: optional sign, digits, optional decimals; not part of a word or of a longer number.
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w]|\.\d)")


def _as_number(part: str) -> float | None:
    match = _NUMBER.fullmatch(part)
    return float(match.group()) if match else None


def _numbers(text: str) -> set[float]:
    return {float(token) for token in _NUMBER.findall(text)}


#: A strict final answer may name at most this many numbers besides the gold answer's own, and at most this many
#: words in all: more is a list of candidates, not an answer.
MAX_EXTRA_NUMBERS = 3
MAX_ANSWER_WORDS = 200
_WORD = re.compile(r"\w+")
_OPPOSITES = {"yes": "no", "no": "yes", "true": "false", "false": "true"}


def strict_final_answer(content: str, answer: str) -> bool:
    """A final answer (a turn without calls) states the gold `answer`: every part as a whole token, numbers as
    numbers, and the text is not a list of candidates: at most `MAX_EXTRA_NUMBERS` numbers besides the gold's own
    when the gold is numeric, at most `MAX_ANSWER_WORDS` words, and for a yes/no (true/false) gold not its
    opposite as well. An empty gold answer is never stated."""
    text = normalize(content)
    parts = gold_parts(answer)
    if not _contains_parts(text, parts) or len(_WORD.findall(text)) > MAX_ANSWER_WORDS:
        return False
    gold_numbers = {value for part in parts if (value := _as_number(part)) is not None}
    if gold_numbers and len(_numbers(text) - gold_numbers) > MAX_EXTRA_NUMBERS:
        return False
    opposites = [_OPPOSITES[part] for part in parts if part in _OPPOSITES]
    return not any(_token_pattern(word).search(text) for word in opposites)


def reference_final_answer(content: str, answer: str) -> bool:
    """The reference's final-answer test: the normalised answer is a substring of the normalised content."""
    return normalize(answer) in normalize(content)


@functools.lru_cache(maxsize=8192)
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


def is_strict(matcher: str | Matcher) -> bool:
    """Whether `matcher` is the strict one (which also decides the strict final-answer and all-solved rules)."""
    return matcher == "strict" or matcher is strict_verify


def final_answer_verify(content: str, answer: str, matcher: str | Matcher = "reference") -> bool:
    """Whether a final answer states the gold `answer`, under the rule of `matcher` (reference: substring)."""
    return strict_final_answer(content, answer) if is_strict(matcher) else reference_final_answer(content, answer)


def get_matcher(matcher: str | Matcher) -> Matcher:
    """A matcher by name (`reference`, `strict`); a callable is returned unchanged."""
    if callable(matcher):
        return matcher
    try:
        return MATCHERS[matcher]
    except KeyError:
        raise ValueError(f"unknown matcher {matcher!r}; known: {', '.join(MATCHERS)}") from None
