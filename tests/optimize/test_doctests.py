"""The examples in the optimizer's docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["core.money", "core.optimize.settings", "core.optimize.levels", "core.optimize.metrics", "core.optimize.recommend",
           "core.platforms.sync", "core.platforms.secret_store"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL)
    assert result.failed == 0
