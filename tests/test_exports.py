"""Each package's curated ``__all__`` is sorted, complete and accurate (httpx's model)."""

from __future__ import annotations
import __future__

import importlib
import types

import pytest

PACKAGES = ["resilience", "telemetry", "fault_injection"]
INCLUDED_PRIVATE = {"__version__"}


def _curated() -> list[types.ModuleType]:
    """The packages that already curate a non-empty ``__all__``."""
    modules = [importlib.import_module(name) for name in PACKAGES]
    return [m for m in modules if getattr(m, "__all__", None)]


def _public(module: types.ModuleType) -> set[str]:
    """Public names bound in the package namespace, except submodules and __future__ flags."""
    return {
        name for name, value in vars(module).items()
        if (not name.startswith("_") or name in INCLUDED_PRIVATE)
        and not isinstance(value, types.ModuleType | __future__._Feature)
    }


@pytest.fixture(params=_curated(), ids=lambda m: m.__name__)
def package(request: pytest.FixtureRequest) -> types.ModuleType:
    """Each package with a curated ``__all__``."""
    module: types.ModuleType = request.param
    return module


def test_resilience_curates_its_exports() -> None:
    """resilience is among the packages checked (its __all__ is non-empty)."""
    assert "resilience" in {m.__name__ for m in _curated()}


def test_all_is_sorted(package: types.ModuleType) -> None:
    """__all__ is in sorted order."""
    assert list(package.__all__) == sorted(package.__all__)


def test_all_has_no_duplicates(package: types.ModuleType) -> None:
    """No name appears twice in __all__."""
    assert len(package.__all__) == len(set(package.__all__))


def test_all_names_exist(package: types.ModuleType) -> None:
    """Everything __all__ promises is an attribute of the package."""
    assert [name for name in package.__all__ if not hasattr(package, name)] == []


def test_all_names_every_public_attribute(package: types.ModuleType) -> None:
    """Every public, non-module name in the package namespace is listed in __all__."""
    assert sorted(_public(package) - set(package.__all__)) == []
