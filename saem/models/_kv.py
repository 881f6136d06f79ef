"""What the engine asks of a loaded ``llama_cpp.Llama`` outside its lock discipline.

Free functions over the ``Llama`` object (or a test double with the same attributes): which
tokens end a generation, how much of a prompt the KV cache already holds (by llama-cpp-python's
own reuse rule), restoring a RAM-cache state, and finding stop strings in decoded text. None of
them takes the engine's lock; the caller holds it where the ``Llama`` state is read or changed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["special_text", "eog_tokens", "common_prefix", "reusable_prefix", "restore_from_cache", "find_stop"]


def special_text(llama: Any, token: int) -> str:
    if token is None or token < 0:
        return ""
    try:
        return bytes(llama.detokenize([token], special=True)).decode("utf-8", errors="replace")
    except Exception:  # some vocabularies have no BOS/EOS text
        return ""


def eog_tokens(llama: Any) -> set[int]:
    eog = {llama.token_eos()}
    try:
        import llama_cpp

        vocab = llama._model.vocab
        eog |= {t for t in range(llama.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)}
    except Exception:  # a test double or an older binding: EOS only
        pass
    return {t for t in eog if t is not None and t >= 0}


def common_prefix(llama: Any, tokens: list[int]) -> int:
    """How many leading ``tokens`` the KV cache already holds."""
    n_past = int(getattr(llama, "n_tokens", 0))
    lcp = 0
    for a, b in zip(llama.input_ids[:n_past], tokens, strict=False):
        if a != b:
            break
        lcp += 1
    return lcp


def reusable_prefix(llama: Any, tokens: list[int]) -> int:
    """How many prompt tokens ``Llama.generate`` will take from the KV cache (its own rule)."""
    n_past = int(getattr(llama, "n_tokens", 0))
    if n_past == 0:
        return 0
    lcp = common_prefix(llama, tokens)
    if lcp == len(tokens):  # generate() replays one token to refresh the logits
        return lcp - 1 if (n_past != len(tokens) or getattr(llama, "_requires_eval", True)) else lcp
    return lcp


def restore_from_cache(llama: Any, tokens: list[int]) -> None:
    """Load the RAM-cache state with the longest shared prefix if it beats the live KV cache."""
    try:
        state = llama.cache[tokens]
    except KeyError:
        return
    from llama_cpp import Llama

    cached = Llama.longest_token_prefix(state.input_ids.tolist(), tokens)
    live = Llama.longest_token_prefix(llama._input_ids.tolist(), tokens)
    if cached > live:
        llama.load_state(state)


def find_stop(text: str, stop: list[str], sent: int) -> int | None:
    """Index where the earliest stop string starts in ``text`` (searching only new text)."""
    best: int | None = None
    for s in stop:
        i = text.find(s, max(0, sent - len(s) + 1))
        if i != -1 and (best is None or i < best):
            best = i
    return best
