"""The counts the reliability tests' docstrings state are the counts their code runs.

A docstring that says "8 kills" over a loop of 6 is a published figure that drifted;
each ``Fast run: N <what> per format (``CONSTANT``); PREFECT_DS_FULL=1: M`` sentence is
read back here and compared with the constant it names.
"""

from __future__ import annotations

import importlib
import re

import pytest
from reliability_support import FULL

SENTENCE = re.compile(r"Fast run: (?P<fast>\d+) \w+ per format \(``(?P<name>[A-Z_]+)``"
                      r".*?PREFECT_DS_FULL=1: (?P<full>\d+)", re.S)


@pytest.mark.parametrize("module", ["test_crash", "test_roundtrip"])
def test_docstring_counts_match_the_code(module: str) -> None:
    mod = importlib.import_module(module)
    match = SENTENCE.search(mod.__doc__ or "")
    assert match, f"{module}'s docstring no longer states its counts as 'Fast run: N ...'"
    stated = int(match["full"] if FULL else match["fast"])
    assert getattr(mod, match["name"]) == stated, (module, match["name"], stated)
