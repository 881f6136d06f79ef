"""One loaded ``llama_cpp.Llama`` plus the lock, template and decode loop around it.

:class:`LlamaEngine` is what several chat-model objects can share: it loads the GGUF once
(lazily, on first use), and serialises every use of the ``Llama`` object with one lock —
``llama_cpp.Llama`` is not thread-safe, and concurrent use aborts the process.

Decoding runs ``Llama.generate`` on the tokens of *our* rendered prompt, so the prompt bytes
are exactly what the template produced, and llama-cpp-python's prefix matching reuses the KV
cache for any shared prefix (system prompt, earlier turns) of consecutive calls. With
``cache="ram"`` a ``LlamaRAMCache`` also keeps states of earlier conversations, for callers
that alternate between sessions.

``prefill(text)`` evaluates a prompt prefix into the KV cache on a background thread while the
model is idle (a chat calls it with the next turn's system prompt and history once an answer
is done), so the next call evaluates only what follows it. A prefill never delays a call: it
starts only when the lock is free and nobody waits for it, and stops at the next batch
boundary as soon as a call asks for the lock; what it evaluated by then is reused.

``tokenize`` does not take that lock: llama.cpp tokenizes with the model's vocabulary alone,
never its context, so counting tokens (the context builder does it many times a turn) runs
beside a decode or a prefill instead of waiting for its batch or stopping it. llama.cpp's own
server tokenizes on its HTTP threads while the main loop decodes, for the same reason.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from saem.errors import ModelError
from saem.models._chat_template import ChatTemplate, ChatTemplateSecurityError, builtin_template
from saem.models._defaults import setting_default
from saem.models._grammar import compile_grammar
from saem.models._kv import common_prefix, eog_tokens, find_stop, restore_from_cache, reusable_prefix, special_text
from saem.models.tracing import ChatTrace

__all__ = ["LlamaEngine", "Sampling"]

logger = logging.getLogger("saem.models")

_OPEN: weakref.WeakSet[LlamaEngine] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # llama-cpp-python's Llama.__del__ fails noisily during interpreter shutdown; close first
    for engine in list(_OPEN):
        engine.close()


_PROBE = [
    {"role": "system", "content": "s"},
    {"role": "user", "content": "u"},
    {"role": "assistant", "content": "a"},
    {"role": "user", "content": "u"},
]


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one call (temperature 0 = greedy)."""

    temperature: float = setting_default("temperature")
    top_p: float = setting_default("top_p")
    top_k: int = setting_default("top_k")
    min_p: float = 0.05  # not a setting: llama.cpp's default, and what every saem call uses
    repeat_penalty: float = setting_default("repeat_penalty")
    max_tokens: int = setting_default("max_tokens")
    seed: int = setting_default("seed")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LlamaEngine:
    """A lazily loaded GGUF behind one lock. Thread-safe; every public method may block on the lock.

    ``llama`` may be given (an already constructed ``llama_cpp.Llama`` or a test double with
    the same methods); otherwise ``model_path`` is loaded on first use.
    Raises ``ModelError`` when the file cannot be loaded or has no usable chat template.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = setting_default("n_ctx"),
        n_threads: int = setting_default("n_threads"),
        n_batch: int = setting_default("n_batch"),
        seed: int = setting_default("seed"),
        chat_format: str | None = None,
        chat_template: str | None = None,
        cache: Literal["ram"] | None = None,
        cache_bytes: int = 1 << 30,
        lora_path: str | Path | None = None,
        llama: Any = None,
    ) -> None:
        if model_path is None and llama is None:
            raise ModelError("LlamaEngine needs a model_path or a llama object")
        self.model_path = Path(model_path) if model_path is not None else None
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.n_batch = n_batch
        self.seed = seed
        self.chat_format = chat_format
        self.chat_template_source = chat_template
        self.cache_kind = cache
        self.cache_bytes = cache_bytes
        self.lora_path = Path(lora_path) if lora_path is not None else None
        self.lock = threading.Lock()  # guards every use of self._llama (Lock, not RLock: astream hops threads)
        self._load_lock = threading.Lock()
        self._vocab_lock = threading.Lock()  # keeps close() from freeing the vocabulary mid-tokenize
        self._waiting = 0  # calls waiting for ``lock``: a running prefill yields to them
        self._waiting_lock = threading.Lock()
        self._llama: Any = llama
        self._owns_llama = llama is None
        self._template: ChatTemplate | None = None
        self._eog: frozenset[int] = frozenset()
        self._bos_text = ""
        if llama is not None:
            self._finish_load()

    _shared: dict[tuple[Any, ...], LlamaEngine] = {}
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls, model_path: str | Path, **params: Any) -> LlamaEngine:
        """One engine per (path, parameters) in this process: several chat models, one loaded GGUF."""
        key = (str(Path(model_path).resolve()), *sorted(params.items()))
        with cls._shared_lock:
            engine = cls._shared.get(key)
            if engine is None:
                engine = cls._shared[key] = cls(model_path, **params)
            return engine

    # --- loading ---------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._template is not None

    def load(self) -> LlamaEngine:
        """Load the GGUF and compile its chat template (idempotent; safe from many threads)."""
        if self._template is not None:
            return self
        with self._load_lock:
            if self._template is None:
                if self._llama is None:
                    self._llama = self._open()
                self._finish_load()
        return self

    def _open(self) -> Any:
        try:
            import llama_cpp
            from llama_cpp.llama_cache import LlamaRAMCache
        except ImportError as err:  # pragma: no cover - install problem
            raise ModelError("llama-cpp-python is not installed", hint="pip install llama-cpp-python") from err
        started = time.perf_counter()
        try:
            llama = llama_cpp.Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                n_batch=self.n_batch,
                seed=self.seed,
                lora_path=str(self.lora_path) if self.lora_path else None,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as err:
            adapter = f" with adapter {self.lora_path}" if self.lora_path else ""
            raise ModelError(
                f"llama.cpp could not load {self.model_path}{adapter}: {err}",
                path=self.model_path,
                hint="the file may be truncated or from a newer llama.cpp (or the adapter was trained for another "
                "base model); re-create it or pick another GGUF",
            ) from err
        _OPEN.add(self)
        if self.cache_kind == "ram":
            llama.set_cache(LlamaRAMCache(capacity_bytes=self.cache_bytes))
        logger.info("loaded %s in %.2fs", self.model_path, time.perf_counter() - started)
        return llama

    def _finish_load(self) -> None:
        llama = self._llama
        source = self.chat_template_source
        if source is None and self.chat_format:
            source = builtin_template(self.chat_format)
        if source is None:
            source = (llama.metadata or {}).get("tokenizer.chat_template")
        if not source:
            raise ModelError(
                f"{self.model_path} has no chat template, and no chat_format was given",
                path=self.model_path,
                hint="set chat_format (chatml, llama-3, mistral-instruct, gemma) to the format the model was tuned on",
            )
        bos = special_text(llama, llama.token_bos())
        eos = special_text(llama, llama.token_eos())
        template = ChatTemplate(source, bos_token=bos, eos_token=eos)
        try:  # surface sandbox violations at load time, before anything is decoded
            template.render(_PROBE)
        except ChatTemplateSecurityError:
            raise
        except ModelError:
            pass  # e.g. a template that refuses system messages; real calls will say so
        self._eog = frozenset(eog_tokens(llama))
        self._bos_text = bos
        self._template = template

    def close(self) -> None:
        """Free the model (waits for a running call). The next use loads it again."""
        if not self._owns_llama:
            return  # an injected Llama belongs to whoever made it
        with self._load_lock, self._claim(), self.lock, self._vocab_lock:
            llama, self._llama, self._template = self._llama, None, None
            if llama is not None:
                llama.close()

    @property
    def template(self) -> ChatTemplate:
        self.load()
        assert self._template is not None
        return self._template

    @property
    def llama(self) -> Any:
        """The ``Llama`` object. Hold the model (``with engine.hold():``) while you use it."""
        self.load()
        return self._llama

    # --- tokens ----------------------------------------------------------------------------

    def _tokenize_unlocked(self, text: str) -> list[int]:
        # add the BOS token only when the model wants one and the template did not write it
        add_bos = not (self._bos_text and text.startswith(self._bos_text))
        return list(self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a rendered prompt, exactly as ``stream`` would feed them to the model.

        Does not wait for a running decode or prefill, and does not interrupt one (see the
        module docstring); only ``close`` excludes it.
        """
        while True:  # a close() between load() and the lock frees the model: load it again
            self.load()
            with self._vocab_lock:
                if self._llama is not None:
                    return self._tokenize_unlocked(text)

    # --- prefill ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _claim(self) -> Iterator[None]:
        """Mark a caller as waiting for the lock, so a running prefill stops at its next batch."""
        with self._waiting_lock:
            self._waiting += 1
        try:
            yield
        finally:
            with self._waiting_lock:
                self._waiting -= 1

    @contextlib.contextmanager
    def hold(self) -> Iterator[Any]:
        """Hold the model for direct use of ``Llama`` (a running prefill yields); gives the ``Llama``."""
        self.load()
        with self._claim(), self.lock:
            yield self._llama

    def next_token_logits(self, prompts: Sequence[str]) -> list[Any]:
        """The model's next-token logits (a float64 array of ``n_vocab``) after each rendered
        prompt, in one hold of the model. Each evaluation reuses the prefix the KV cache holds
        from the one before (scoring many passages under one question re-reads only the
        passage); a prompt longer than ``n_ctx - 1`` tokens is cut at the end."""
        import llama_cpp
        import numpy as np

        out = []
        with self.hold() as llama:
            for prompt in prompts:
                tokens = self._tokenize_unlocked(prompt)[: llama.n_ctx() - 1]
                shared = min(common_prefix(llama, tokens), len(tokens) - 1)  # evaluate >= 1 token: fresh logits
                llama.n_tokens = shared
                llama.eval(tokens[shared:])
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llama.ctx), shape=(llama.n_vocab(),))
                out.append(logits.astype(np.float64))
        return out

    def prefill(self, prompt: str) -> threading.Thread | None:
        """Evaluate ``prompt`` (a rendered prefix of a later prompt) into the KV cache, in the
        background; returns the thread, or None when the model is not loaded yet.

        Best effort and never in the way: skipped when the model is busy, interrupted between
        batches when a call asks for the model; errors are logged, not raised.
        """
        if not self.loaded or not prompt:
            return None
        thread = threading.Thread(target=self._prefill, args=(prompt,), name="saem-prefill", daemon=True)
        thread.start()
        return thread

    def _prefill(self, prompt: str) -> None:
        if self._waiting or not self.lock.acquire(blocking=False):
            return  # a call has or wants the model: its prompt decides what is cached
        try:
            if self._llama is not None:
                self._prefill_locked(prompt)
        except Exception as err:  # a failed prefill costs only the next call's reuse
            logger.warning("prefill failed: %s", err)
        finally:
            self.lock.release()

    def _prefill_locked(self, prompt: str) -> None:
        llama = self._llama
        started = time.perf_counter()
        # the last token may merge with the text that follows it in the full prompt
        tokens = self._tokenize_unlocked(prompt)[:-1][: llama.n_ctx() - 1]
        if getattr(llama, "cache", None) is not None:
            restore_from_cache(llama, tokens)
        done = common_prefix(llama, tokens)
        if done == len(tokens):
            return
        llama.n_tokens = done
        llama._requires_eval = True  # the logits in hand belong to a later position
        for i in range(done, len(tokens), self.n_batch):
            if self._waiting:
                break
            llama.eval(tokens[i : i + self.n_batch])
        logger.debug(
            "prefilled %d tokens (%d reused) in %.2fs", int(llama.n_tokens) - done, done, time.perf_counter() - started
        )

    # --- decoding --------------------------------------------------------------------------

    def stream(
        self,
        prompt: str,
        sampling: Sampling,
        trace: ChatTrace,
        *,
        stop: list[str] | None = None,
        grammar: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[str]:
        """Decode after ``prompt``, yielding text pieces; fills ``trace`` as it goes.

        Holds the lock from the first ``next()`` until the generator finishes or is closed.
        Stops at an end-of-generation token, at any ``stop`` string (not included in the output),
        at ``sampling.max_tokens``, or at the end of the context. Raises ``TimeoutError`` when
        the lock is not free within ``timeout`` seconds and ``ModelError`` when the prompt does
        not fit the context.
        """
        self.load()
        stop = [s for s in (stop or []) if s]
        waited = time.perf_counter()
        with self._claim():
            acquired = self.lock.acquire(timeout=-1 if timeout is None else timeout)
        if not acquired:
            raise TimeoutError(f"the model stayed busy for {timeout}s (another call holds it)")
        try:
            yield from self._stream_locked(prompt, sampling, trace, stop, grammar, time.perf_counter() - waited)
        finally:
            self.lock.release()

    def _stream_locked(
        self, prompt: str, sampling: Sampling, trace: ChatTrace, stop: list[str], grammar: str | None, waited: float
    ) -> Iterator[str]:
        llama = self._llama
        started = time.perf_counter()
        tokens = self._tokenize_unlocked(prompt)
        n_ctx = llama.n_ctx()
        if len(tokens) >= n_ctx:
            raise ModelError(
                f"the prompt is {len(tokens)} tokens; the context holds {n_ctx}",
                hint="raise n_ctx or send less history/context",
            )
        budget = min(sampling.max_tokens, n_ctx - len(tokens))
        if getattr(llama, "cache", None) is not None:
            restore_from_cache(llama, tokens)
        cached = reusable_prefix(llama, tokens)
        trace.prompt, trace.prompt_tokens, trace.cached_tokens = prompt, len(tokens), cached
        trace.sampling, trace.stop, trace.lock_wait = sampling.as_dict(), list(stop), waited
        llama.set_seed(sampling.seed)

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        hold = max((len(s) for s in stop), default=0)
        text = ""  # decoded completion so far
        sent = 0  # chars of ``text`` already yielded
        completion: list[int] = []
        finish = "length"
        first_at = last_at = started
        generator = llama.generate(
            tokens,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            grammar=compile_grammar(grammar) if grammar else None,
        )
        try:
            for token in generator:
                last_at = time.perf_counter()
                if not completion and first_at == started:
                    first_at = last_at
                if token in self._eog:
                    finish = "stop"
                    break
                completion.append(token)
                text += decoder.decode(llama.detokenize([token], special=False))
                cut = find_stop(text, stop, sent)
                if cut is not None:
                    text, finish = text[:cut], "stop"
                    break
                safe = len(text) - hold if hold else len(text)
                if safe > sent:
                    yield text[sent:safe]
                    sent = safe
                if len(completion) >= budget:
                    break
        finally:
            generator.close()
            if finish == "length" and len(completion) < budget:
                finish = "interrupted"
            # bytes of a character cut off by max_tokens (or an interruption) are dropped, not
            # shown as U+FFFD: the incremental decoder still holds them, so no final flush
            ended = time.perf_counter()
            trace.completion, trace.completion_tokens, trace.finish_reason = text, len(completion), finish
            trace.prompt_eval_time = first_at - started
            trace.time_to_first_token = first_at - started
            trace.generation_time = last_at - first_at
            trace.total_time = ended - started
            if getattr(llama, "cache", None) is not None and finish != "interrupted":
                llama.cache[tokens + completion] = llama.save_state()
        if len(text) > sent:
            yield text[sent:]
