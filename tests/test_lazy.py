"""The lazy public names of saem's package faces: one rule, cached, with the usual AttributeError."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

FACES = ["saem", "saem.memory", "saem.retrieval", "saem.agents", "saem.models", "saem.evaluation"]


@pytest.mark.parametrize("face", FACES)
def test_every_listed_name_resolves_and_is_cached_and_others_raise(face: str) -> None:
    package = importlib.import_module(face)
    for name in package.__all__:
        value = getattr(package, name)
        assert vars(package)[name] is value  # cached: the lookup runs once
    with pytest.raises(AttributeError, match=f"module '{face}' has no attribute 'no_such_name'"):
        package.no_such_name  # noqa: B018


def test_importing_the_faces_loads_no_heavy_library() -> None:
    code = (
        "import sys, "
        + ", ".join(FACES)
        + "; print(sorted(m for m in ('torch', 'faiss', 'llama_cpp', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
