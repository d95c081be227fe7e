"""The package's public names load on first use, so light modules stay light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import routing

HEAVY = ("numpy", "scipy", "networkx", "ortools")


@pytest.mark.parametrize("name", routing.__all__)
def test_every_public_name_resolves_to_its_definition(name: str) -> None:
    """Each name in ``__all__`` is an attribute of the package, the same object its module defines."""
    assert getattr(routing, name) is getattr(importlib.import_module(routing._HOME[name]), name)


def test_all_lists_every_lazy_name() -> None:
    """``__all__`` and the table of lazy names list the same names."""
    assert sorted(routing.__all__) == sorted(routing._HOME)


def test_an_unknown_name_is_an_attribute_error() -> None:
    """A misspelt name fails like on any module."""
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = routing.no_such_name  # type: ignore[attr-defined]


@pytest.mark.parametrize("module", ["ingest.jt808.service", "ingest.service", "routing.vocab"])
def test_the_gateway_and_the_ingestor_import_no_numeric_library(module: str) -> None:
    """A fresh interpreter importing the process's module loads none of numpy, scipy,
    networkx, OR-Tools (they cost a gateway process about 60 MB it never uses)."""
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
