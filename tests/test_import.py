"""``import saem`` stays light: heavy libraries load only where they are used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

HEAVY = ["torch", "faiss", "llama_cpp", "sentence_transformers", "transformers", "kiwipiepy", "sqlalchemy"]


def _modules_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    ["import saem", "import saem.models", "import saem.retrieval", "import saem.memory", "from saem import Saem; Saem",
     "import saem.cli.main"],
)
def test_import_does_not_pull_heavy_libraries(code: str) -> None:
    loaded = _modules_after(code)
    assert not [m for m in HEAVY if m in loaded], f"{code!r} imported heavy modules"


def test_unknown_attribute_is_an_attribute_error() -> None:
    import saem

    with pytest.raises(AttributeError):
        saem.does_not_exist  # noqa: B018


def test_the_installed_package_is_the_regular_one_from_any_directory(tmp_path: Path) -> None:
    # a stale editable install can map "saem" as a namespace package: then ``from saem import
    # Saem`` fails everywhere but in the repo root. Run from elsewhere to catch that.
    script = "import saem; from saem import Saem; print(saem.__file__)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).parts[-2:] == ("saem", "__init__.py")


def test_every_public_name_resolves_to_a_typed_object() -> None:
    import saem

    for name in saem.__all__:
        value = getattr(saem, name)
        assert value is not None, name
        if isinstance(value, type):
            assert value.__module__.startswith("saem."), name
    assert set(saem._LAZY) <= set(saem.__all__)  # every lazy name is public, and the reverse resolves above
