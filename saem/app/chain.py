"""A document turn as LCEL runnables: load → condense → retrieve → context → generate.

    chain = build_chain(deps)              # deps: TurnDeps.build(...); ``Saem.chain`` is this runnable
    for piece in chain.stream({"question": "top-p는?", "session_id": "s1", "user_id": "alice"}):
        print(piece if isinstance(piece, str) else piece.citations)   # tokens, then the Answer
    answer = chain.invoke("What is LoRA?")  # session "default", user "default"

An adapter at the edge: each named runnable is one step of :mod:`saem.app.turn` (``load`` is
:func:`~saem.app.turn.start`; the stages are :class:`~saem.app.rag.RagStrategy`'s; ``generate``
generates and records the turn), so a chain turn is the same turn ``Saem.ask`` runs, and
LCEL callbacks see every stage by name. If the consumer stops iterating early the turn is not
stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda

from saem.app.rag import RagStrategy, looks_like_followup
from saem.app.turn import Retrieved, TurnDeps, TurnState, as_retrieve_fn, finish, start, timed

__all__ = ["ChainDeps", "TurnState", "Retrieved", "build_chain", "as_retrieve_fn", "looks_like_followup"]

ChainDeps = TurnDeps
"""The name this had when the chain held the turn's logic."""


def build_chain(deps: TurnDeps) -> Runnable[Any, Any]:
    """The LCEL runnable of one document turn (see the module docstring)."""
    rag = RagStrategy(deps)

    def step(name: str, stage: Callable[[TurnState], None]) -> Runnable[Any, Any]:
        def run(state: TurnState) -> TurnState:
            # a memory command's turn skips the strategy, as run_turn does (no stage timings)
            return state if state.reply is not None else timed(state, name, stage)

        return RunnableLambda(run).with_config(run_name=name)

    def generate(states: Iterator[TurnState]) -> Iterator[Any]:
        for state in states:
            yield from finish(deps, rag, state, rag.generate(state))

    chain: Runnable[Any, Any] = RunnableLambda(lambda inp: start(deps, inp)).with_config(run_name="load")
    for name, stage in rag.stages():
        chain = chain | step(name, stage)
    return chain | RunnableGenerator(generate).with_config(run_name="generate")
