"""Every default model loads from the installed packages with the network blocked."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_socket

from saem.models.check import check_models
from saem.settings import Settings

pytestmark = pytest.mark.integration


def test_every_default_model_loads_with_sockets_disabled(tmp_path: Path) -> None:
    pytest_socket.disable_socket(allow_unix_socket=True)  # not even loopback
    settings = Settings.load({"data_dir": tmp_path}, environ={})
    rows = {row.kind: row for row in check_models(settings, load=True)}
    assert set(rows) == {"chat", "embed", "rerank"}
    for kind, row in rows.items():
        assert row.usable, f"{kind}: {row.detail}"
    assert rows["chat"].resolved is not None and rows["chat"].resolved.source == "packaged"
    assert "chat template" in rows["chat"].detail and "NO chat template" not in rows["chat"].detail
    assert rows["chat"].load_seconds is not None and rows["embed"].load_seconds is not None
    assert rows["embed"].detail.endswith("-d")


def test_a_corrupt_gguf_is_reported_not_raised(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)  # right magic, garbage after
    settings = Settings.load({"data_dir": tmp_path, "chat_model": str(broken)}, environ={})
    chat = check_models(settings, load=True)[0]
    assert chat.kind == "chat" and not chat.usable
    assert str(broken) in chat.detail
