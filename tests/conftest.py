"""Test tiers and shared fixtures.

Tiers (every test carries exactly one of these markers; collection fails otherwise):

* ``unit`` — fakes only; sockets are disabled entirely (pytest-socket).
* ``integration`` — the real packaged models and real SQLite files; sockets may reach only
  loopback (a test-started server), so a hidden download attempt fails the test.
* ``slow`` — long runs (kill-and-rerun, 50-call loops, small trainings); same socket rule
  as integration. ``make test`` runs every tier.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_socket

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
TIERS = ("unit", "integration", "slow")
LOOPBACK = ["127.0.0.1", "localhost", "::1"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [item.nodeid for item in items if not any(item.get_closest_marker(t) for t in TIERS)]
    if missing:
        raise pytest.UsageError(
            "tests without a tier marker (unit / integration / slow):\n  " + "\n  ".join(missing[:20])
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("unit"):
        pytest_socket.disable_socket(allow_unix_socket=True)
    else:
        pytest_socket.socket_allow_hosts(LOOPBACK, allow_unix_socket=True)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    pytest_socket.enable_socket()
    pytest_socket._remove_restrictions()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (corpora and QA sets). Tests that need it fail with a clear message if absent."""
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: these tests read the shared development corpus that sits beside the repo")
    return SHARED
