"""The chat REPL: streamed answers, their sources, and the context behind them.

``Repl(app)`` talks to a ``Saem`` (or anything with the same ``stream``/``history``/...
methods). On a terminal it reads with prompt_toolkit (history across runs, slash-command
completion, Esc then Enter for a new line); otherwise it reads plain lines from stdin, so it
can be driven by a pipe. Ctrl-C stops the current generation and keeps the session; Ctrl-D or
``/exit`` leaves.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from saem.cli._common import describe_answer_mode

__all__ = ["Repl", "COMMANDS"]

COMMANDS: dict[str, str] = {
    "/help": "this list",
    "/sources": "the last answer's chunks, with scores and stage ranks",
    "/prompt": "the exact rendered prompt of the last turn",
    "/budget": "the token budget of the last turn",
    "/trace": "timings per stage of the last turn",
    "/memory": "what saem remembers about you",
    "/forget": "/forget ID or /forget some text — remove memories",
    "/session": "/session new [NAME] | list | switch NAME",
    "/ingest": "/ingest PATH — add documents (with progress)",
    "/tools": "/tools on|off — let the model use tools",
    "/set": "/set temperature 0.2 (also top_p, top_k, max_tokens, repeat_penalty, seed, answer_mode)",
    "/model": "what is loaded: model, n_ctx, threads",
    "/clear": "clear the screen",
    "/exit": "leave (Ctrl-D works too)",
}
SETTABLE = {
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "max_tokens": int,
    "repeat_penalty": float,
    "seed": int,
    "answer_mode": str,
}


@dataclass
class ReplState:
    session_id: str
    user_id: str
    tools: bool = False
    last: Any = None  # the last Answer
    names: list[str] = field(default_factory=list)


class Repl:
    """One chat session in a terminal (or over a pipe). See the module docstring."""

    def __init__(
        self,
        app: Any,
        *,
        session_id: str = "default",
        user_id: str = "default",
        console: Console | None = None,
        history_file: Path | None = None,
    ) -> None:
        self.app = app
        self.console = console or Console()
        self.state = ReplState(session_id=session_id, user_id=user_id)
        self.history_file = history_file
        self._handlers: dict[str, Callable[[list[str]], None]] = {
            "/help": self._help,
            "/sources": self._sources,
            "/prompt": self._prompt,
            "/budget": self._budget,
            "/trace": self._trace,
            "/memory": self._memory,
            "/forget": self._forget,
            "/session": self._session,
            "/ingest": self._ingest,
            "/tools": self._tools,
            "/set": self._set,
            "/model": self._model,
            "/clear": lambda _args: self.console.clear(),
        }

    # --- the loop ----------------------------------------------------------------------------

    def run(self, interactive: bool | None = None) -> None:
        """Read and answer until /exit or end of input."""
        interactive = sys.stdin.isatty() if interactive is None else interactive
        self._banner()
        for line in self._lines(interactive):
            text = line.strip()
            if not text:
                continue
            if text in {"/exit", "/quit"}:
                break
            if text.startswith("/"):
                self.command(text)
            else:
                self.turn(text)
        self.console.print("[dim]bye[/]")

    def _lines(self, interactive: bool) -> Iterator[str]:
        if not interactive:
            for line in sys.stdin:
                self.console.print(f"[bold cyan]you>[/] {line.rstrip()}", highlight=False)
                yield line
            return
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import WordCompleter
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings

        bindings = KeyBindings()

        @bindings.add("escape", "enter")
        def _newline(event: Any) -> None:  # Esc, Enter: a new line inside the message
            event.current_buffer.insert_text("\n")

        history = FileHistory(str(self.history_file)) if self.history_file else InMemoryHistory()
        session: Any = PromptSession(
            history=history,
            completer=WordCompleter(list(COMMANDS), sentence=True),
            key_bindings=bindings,
        )
        while True:
            try:
                yield session.prompt(f"{self.state.session_id}> ")
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line
            except EOFError:
                return

    def _banner(self) -> None:
        mode = describe_answer_mode(self.app.settings)
        earlier = len(self.app.history(self.state.session_id))
        self.console.print(
            f"[bold]saem chat[/] — session [cyan]{self.state.session_id}[/], user [cyan]{self.state.user_id}[/]"
            + (f", answer mode [cyan]{mode}[/]" if mode else "")
            + (f"\n[dim]resuming: {earlier} earlier messages in this session[/]" if earlier else "")
            + "\n[dim]/help for commands · Esc Enter for a new line · Ctrl-C stops an answer · Ctrl-D leaves[/]"
        )

    # --- one turn ------------------------------------------------------------------------------

    def turn(self, question: str) -> Any:
        """Stream one answer, then its sources. Ctrl-C stops the generation; the session stays."""
        if self.state.tools:
            return self._agent_turn(question)
        text = ""
        answer = None
        stream = self.app.stream(question, session_id=self.state.session_id, user_id=self.state.user_id)
        try:
            with Live(Markdown(""), console=self.console, refresh_per_second=12, transient=False) as live:
                for item in stream:
                    if isinstance(item, str):
                        text += item
                        live.update(Markdown(text))
                    else:
                        answer = item
                        live.update(Markdown(answer.text))
        except KeyboardInterrupt:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            self.console.print("[yellow]stopped[/] — the session is kept")
            return None
        if answer is None:
            return None
        self.state.last = answer
        for notice in getattr(answer, "notices", []):
            self.console.print(f"[yellow]note:[/] {notice}")
        self._source_list(answer, compact=True)
        return answer

    def _agent_turn(self, question: str) -> Any:
        """With /tools on: the router agent picks a tool (or answers); destructive tools ask y/n."""
        try:
            with self.console.status("thinking (tools on)…"):
                result = self.app.ask(
                    question,
                    session_id=self.state.session_id,
                    user_id=self.state.user_id,
                    tools="default",
                    agent="router",
                    confirm=self._confirm,
                )
        except KeyboardInterrupt:
            self.console.print("[yellow]stopped[/] — the session is kept")
            return None
        self.state.last = result  # its trace_id serves /trace and /prompt
        self.console.print(Markdown(result.text))
        for call in result.tool_calls:
            colour = {"ran": "green", "refused": "yellow", "failed": "red"}.get(call.status, "white")
            self.console.print(
                f"[dim]tool[/] [{colour}]{call.status}[/] {call.name}({call.arguments}) — {call.summary}",
                highlight=False,
            )
        return result

    def _confirm(self, name: str, arguments: dict[str, Any]) -> bool:
        """Ask the person before a destructive tool runs (never without a terminal)."""
        if not sys.stdin.isatty():
            return False
        reply = self.console.input(f"[bold yellow]{name}({arguments}) changes your data. Run it? [y/N][/] ")
        return reply.strip().lower() in {"y", "yes", "예", "네"}

    def _source_list(self, answer: Any, *, compact: bool) -> None:
        sources = getattr(answer, "sources", [])
        if not sources:
            return
        cited = {c.n for c in getattr(answer, "citations", []) if c.supported}
        for s in sources:
            mark = "✓" if s.n in cited else " "
            span = f"{s.start}-{s.end}" if s.start is not None else "-"
            line = f"[dim]{mark} [{s.n}] {s.source} · {s.heading or '-'} · {span}[/]"
            if not compact:
                line += f" [dim]score {s.score:.3f}[/]" if s.score is not None else ""
            self.console.print(line, highlight=False)

    # --- commands ------------------------------------------------------------------------------

    def command(self, line: str) -> None:
        """Run one slash command; unknown commands say so and point at /help."""
        try:
            parts = shlex.split(line)
        except ValueError as err:
            self.console.print(f"[red]cannot parse that command: {err}[/]")
            return
        handler = self._handlers.get(parts[0])
        if handler is None:
            self.console.print(f"[red]unknown command {parts[0]}[/] — /help lists them")
            return
        try:
            handler(parts[1:])
        except Exception as err:  # a command must never end the session
            self.console.print(f"[red]{parts[0]} failed:[/] {err}")

    def _help(self, _args: list[str]) -> None:
        table = Table(show_header=False, box=None)
        for name, text in COMMANDS.items():
            table.add_row(f"[bold]{name}[/]", text)
        self.console.print(table)

    def _need_last(self) -> Any:
        if self.state.last is None:
            self.console.print("[dim]no answer yet in this session[/]")
        return self.state.last

    def _last_trace(self) -> Any:
        last = self._need_last()
        return self.app.trace(last.trace_id) if last is not None and last.trace_id else None

    def _sources(self, _args: list[str]) -> None:
        last = self._need_last()
        if last is None:
            return
        trace = self._last_trace()
        self.console.print("sources of the last answer")
        table = Table()
        for col in ("n", "source", "heading", "span", "score", "dense", "lexical", "fused", "rerank"):
            table.add_column(col)
        ranks = {str(r.get("chunk_id")): r for r in (trace.retrieved if trace is not None else [])}
        for s in getattr(last, "sources", []):  # an agent answer has none
            r = ranks.get(str(s.chunk_id), {})
            table.add_row(
                str(s.n),
                s.source,
                s.heading or "-",
                f"{s.start}-{s.end}",
                f"{s.score:.3f}" if s.score is not None else "-",
                *(str(r.get(k, "-")) for k in ("dense_rank", "lexical_rank", "fused_rank", "rerank_rank")),
            )
        self.console.print(table)

    def _prompt(self, _args: list[str]) -> None:
        trace = self._last_trace()
        if trace is not None:
            self.console.rule("rendered prompt")
            self.console.print(trace.prompt, markup=False, highlight=False)
            self.console.rule(f"{trace.prompt_tokens} tokens")

    def _budget(self, _args: list[str]) -> None:
        last = self._need_last()
        if last is None or getattr(last, "budget", None) is None:  # an agent answer has no budget
            return
        b = last.budget
        self.console.print(
            f"budget: {b.prompt_tokens} of {b.limit} prompt tokens (n_ctx {b.n_ctx}, "
            f"{b.reserved_output} reserved for the answer)",
            highlight=False,
        )
        table = Table()
        table.add_column("part")
        table.add_column("tokens", justify="right")
        for part, tokens in b.parts.items():
            table.add_row(part, str(tokens))
        self.console.print(table)
        for item, reason in b.dropped:
            self.console.print(f"[yellow]dropped[/] {item}: {reason}", highlight=False)

    def _trace(self, _args: list[str]) -> None:
        trace = self._last_trace()
        if trace is None:
            return
        self.console.print("timings of the last turn")
        table = Table()
        table.add_column("stage")
        table.add_column("seconds", justify="right")
        for stage, seconds in trace.timings.items():
            table.add_row(stage, f"{seconds:.3f}")
        self.console.print(table)
        steps = getattr(trace, "steps", None)
        if steps:  # an agent turn: the route choice, model calls and tool calls in order
            self.console.print(f"agent steps ({trace.agent}, stopped: {trace.stop_reason})")
            table = Table()
            for col in ("step", "kind", "name", "detail", "seconds"):
                table.add_column(col, justify="right" if col in {"step", "seconds"} else "left")
            for n, step in enumerate(steps, 1):
                table.add_row(str(n), step["kind"], Text(step["name"]), Text(step["detail"]), f"{step['seconds']:.3f}")
            self.console.print(table)

    def _memory(self, _args: list[str]) -> None:
        rows = self.app.memories(self.state.user_id)
        if not rows:
            self.console.print("[dim]no memories yet — say 'remember that …' or '기억해 줘 …'[/]")
        for m in rows:
            self.console.print(f"[bold]{m.id}[/] {m.text}", highlight=False)

    def _forget(self, args: list[str]) -> None:
        if not args:
            self.console.print("usage: /forget ID | /forget some text")
            return
        if len(args) == 1 and args[0].isdigit():
            removed = self.app.forget(self.state.user_id, id=int(args[0]))
        else:
            removed = self.app.forget(self.state.user_id, query=" ".join(args))
        self.console.print(f"forgot {len(removed)} memor{'y' if len(removed) == 1 else 'ies'}")

    def _session(self, args: list[str]) -> None:
        if not args or args[0] == "list":
            for info in self.app.sessions(self.state.user_id):
                mark = "*" if info.id == self.state.session_id else " "
                self.console.print(f"{mark} {info.id}  {getattr(info, 'title', '') or ''}", highlight=False)
            return
        if args[0] == "new":
            import uuid

            name = args[1] if len(args) > 1 else f"s-{uuid.uuid4().hex[:6]}"
        elif args[0] == "switch" and len(args) > 1:
            name = args[1]
        else:
            self.console.print("usage: /session new [NAME] | list | switch NAME")
            return
        self.state.session_id = name
        self.state.last = None
        self.console.print(f"session [cyan]{name}[/] ({len(self.app.history(name))} messages)")

    def _ingest(self, args: list[str]) -> None:
        if not args:
            self.console.print("usage: /ingest PATH")
            return
        from saem.cli.ingest_cmd import ProgressView, show_report

        with ProgressView(enabled=True) as view:
            report = self.app.ingest(*args, progress=view.update)
        show_report(report, quiet_unchanged=True)

    def _tools(self, args: list[str]) -> None:
        if args and args[0] in {"on", "off"}:
            self.state.tools = args[0] == "on"
        self.console.print(f"tools are {'on' if self.state.tools else 'off'}")

    def _set(self, args: list[str]) -> None:
        if len(args) != 2 or args[0] not in SETTABLE:
            self.console.print("usage: /set KEY VALUE with KEY one of " + ", ".join(SETTABLE))
            return
        key, raw = args
        value = SETTABLE[key](raw)
        self.app.configure(**{key: value})
        self.console.print(f"{key} = {value}")

    def _model(self, _args: list[str]) -> None:
        s = self.app.settings
        self.console.print(
            f"chat model [bold]{s.chat_model}[/] ({s.chat_backend}) · n_ctx {s.n_ctx} · threads {s.n_threads} · "
            f"temperature {s.temperature} · embedder {s.embed_model} · reranker {s.rerank_model}",
            highlight=False,
        )


