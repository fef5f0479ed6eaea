"""Importing pricewave keeps Feast's classes as written (no typeguard instrumentation at import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECK = """
import sys
sys.path.insert(0, {folder!r})
{first}
import feast
from feast import Field, FeatureView
import typeguard
import other  # a module of someone else's that uses @typechecked
instrumented = lambda function: "typeguard._functions" in function.__code__.co_names
print(instrumented(Field.__init__), instrumented(FeatureView.__init__))
try:
    other.double("not a number")
    print("unchecked")
except typeguard.TypeCheckError:
    print("checked")
"""
OTHER = """
from typeguard import typechecked

@typechecked
def double(x: int) -> int:
    return 2 * x
"""


def run(first: str, folder: Path) -> list[str]:
    code = CHECK.format(folder=str(folder), first=first)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return result.stdout.split()


def test_feast_classes_skip_typeguard_only_when_pricewave_comes_first(tmp_path: Path) -> None:
    (tmp_path / "other.py").write_text(OTHER)
    assert run("", tmp_path) == ["True", "True", "checked"]  # Feast alone: instrumented at import
    assert run("import pricewave", tmp_path) == ["False", "False", "checked"]  # others keep their checks


LAZY_TORCH = """
import sys
{first}
import feast
from feast.online_response import OnlineResponse
print("torch" in sys.modules)
from feast.torch_wrapper import TORCH_AVAILABLE, get_torch
print(TORCH_AVAILABLE, "torch" in sys.modules, get_torch() is sys.modules["torch"])
"""


def test_feast_imports_torch_only_when_asked_for_it_once_pricewave_comes_first() -> None:
    def run_lazy(first: str) -> list[str]:
        code = LAZY_TORCH.format(first=first)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
        return result.stdout.split()

    assert run_lazy("") == ["True", "True", "True", "True"]  # Feast alone imports torch with itself
    assert run_lazy("import pricewave") == ["False", "True", "True", "True"]  # on first use, same answers
