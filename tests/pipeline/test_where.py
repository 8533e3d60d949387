"""``input.where``: parsed, never run as Python; missing keys select nothing."""

from __future__ import annotations

import pytest

from sciimg.errors import ConfigError
from sciimg.pipeline import load_config
from sciimg.pipeline.where import Where

ROW = {"id": "visit-0_ccd-1", "exptime": 60.0, "filter": "g", "visit": 0}


@pytest.mark.parametrize(
    ("text", "selected"),
    [
        ("exptime >= 60 and filter == 'g'", True),
        ("exptime > 60 or filter == 'r'", False),
        ("filter in ['g', 'r'] and not visit", True),
        ("visit not in (1, 2)", True),
        ("0 <= visit < 1", True),
        ("exptime / 2 == 30 and -visit == 0", True),
        ("id == 'visit-0_ccd-1'", True),
        ("airmass < 1.5", False),  # a key the item lacks
        ("airmass < 1.5 or visit == 0", True),  # fails only its own part
        ("filter > 3", False),  # a string against a number
    ],
)
def test_selects(text, selected):
    assert Where(text)(ROW) is selected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("__import__('os').system('true')", "call is not allowed"),
        ("filter.upper() == 'G'", "is not allowed"),
        ("visit[0] == 1", "subscript is not allowed"),
        ("lambda: 1", "lambda is not allowed"),
        ("exptime >", "not an expression"),
    ],
)
def test_only_comparisons(text, problem):
    with pytest.raises(ConfigError, match=problem):
        Where(text)


def test_a_misspelt_key_is_named_with_the_keys_there_are():
    with pytest.raises(ConfigError) as err:
        Where("exptim > 60").check_names(ROW)
    assert str(err.value) == (
        "input.where: no item has 'exptim' in its metadata; did you mean "
        "'exptime'? (keys: exptime, filter, id, visit)"
    )


def test_config_error_is_one_line():
    with pytest.raises(ConfigError) as err:
        load_config(
            {
                "pipeline": "astro",
                "input": {"path": "d", "where": "open('x')"},
                "output": "o",
            }
        )
    (line,) = str(err.value).splitlines()
    assert line.startswith("config: input.where: call is not allowed")
