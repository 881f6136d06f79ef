"""Agents: tools behind an allowlist, a tool-calling loop, a one-step router, and extraction.

    from saem.agents import ToolRegistry, builtin_tools, AgentLoop, Router
    from saem.agents.extract import extract
    registry = ToolRegistry(builtin_tools(retrieve=app.retrieve))
    session = registry.session(allow=["search_documents", "calculator"])
    AgentLoop(model, session).run("…").text       # models that call tools well
    Router(model, session).run("…").text          # small models: one constrained choice

Importing ``saem.agents`` is cheap: each name loads its module on first use. ``extract`` is not
re-exported here: the submodule ``saem.agents.extract`` shares its name, and Python sets the
package attribute to the module once the submodule is imported, so the re-export would flip
from function to module depending on import order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from saem._lazy import lazy_attribute

if TYPE_CHECKING:
    from saem.agents.builtin import DEFAULT_TOOLS, builtin_tools, calculate
    from saem.agents.loop import AgentLoop
    from saem.agents.registry import ToolRegistry, ToolSession
    from saem.agents.router import Router
    from saem.agents.types import AgentResult, AgentStep, ToolCallRecord

__all__ = [
    "AgentLoop",
    "AgentResult",
    "AgentStep",
    "DEFAULT_TOOLS",
    "Router",
    "ToolCallRecord",
    "ToolRegistry",
    "ToolSession",
    "builtin_tools",
    "calculate",
]

_LAZY = {
    "AgentLoop": "saem.agents.loop",
    "AgentResult": "saem.agents.types",
    "AgentStep": "saem.agents.types",
    "DEFAULT_TOOLS": "saem.agents.builtin",
    "Router": "saem.agents.router",
    "ToolCallRecord": "saem.agents.types",
    "ToolRegistry": "saem.agents.registry",
    "ToolSession": "saem.agents.registry",
    "builtin_tools": "saem.agents.builtin",
    "calculate": "saem.agents.builtin",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)


def __dir__() -> list[str]:
    return sorted(__all__)
