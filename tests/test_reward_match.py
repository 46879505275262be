"""The reference substring matcher and the opt-in strict matcher, side by side."""

from __future__ import annotations

import pytest

from ftrl.reward import answer_verify, get_matcher, strict_verify


def test_reference_normalises_case_commas_and_converts_non_strings():
    assert answer_verify("The total is 213,000 acres", "213000")  # commas removed on both sides
    assert answer_verify({"Capital": "PARIS"}, "paris")  # dict -> json.dumps -> '{"capital": "paris"}'
    assert answer_verify(1420, "1420")  # non-str -> str()
    assert answer_verify("Paris is in France", "France, Paris")  # gold split on ", ": every part must be there
    assert not answer_verify("Paris", "France, Paris")


@pytest.mark.parametrize(
    ("output", "gold", "arguments", "reference", "strict"),
    [
        ("There are 15 photos", "5", None, True, False),  # digit inside a number
        ("Taken in 2025", "5", None, True, False),
        ('{"casualties": "12"}', "2", None, True, False),  # the Prüm/Kemi row: "2" inside "12"
        ("Scored 1.5 points", "5", None, True, False),  # decimal continuation
        ("Nothing found", "no", None, True, False),  # word inside a word
        ("", "", None, True, False),  # an empty gold part matches everything in the reference
        ("Mars has 2 moons.", "2", None, True, True),
        ('{"landmark": "Eiffel Tower", "photo_count": 5}', "5", None, True, True),
        ("It cost $1,420.", "1420", None, True, True),  # commas removed first; "." then end is no decimal
        # echo: the output repeats the call's own argument
        ("Searching. Involving figure: Michel Barnier.", "Michel Barnier", {"figure": "Michel Barnier"}, True, False),
        # the echoed value is cut only where it occurs whole; the tool's own mention still counts
        (
            "No 'michel barnier biography'; Michel Barnier was PM",
            "Michel Barnier",
            {"q": "Michel Barnier biography"},
            True,
            True,
        ),
        # numeric arguments are cut only as whole numbers: 15 is not cut out of 150
        ("Area: 150", "150", {"length": 10, "width": 15}, True, True),
        ("Area: 150", "150", {"area": 150, "exact": True}, True, False),
        ("Kenya, Africa", "Kenya", {"places": ["Nairobi", {"country": "Kenya"}]}, True, False),  # nested leaves
    ],
)
def test_strict_versus_reference(output, gold, arguments, reference, strict):
    assert answer_verify(output, gold, arguments) is reference
    assert strict_verify(output, gold, arguments) is strict


def test_get_matcher():
    assert get_matcher("reference") is answer_verify
    assert get_matcher("strict") is strict_verify
    custom = lambda predict, golden, arguments=None: True  # noqa: E731
    assert get_matcher(custom) is custom
    with pytest.raises(ValueError, match="unknown matcher"):
        get_matcher("fuzzy")
