"""Check the configured models: what each resolves to, its size, how long it takes to load."""

from __future__ import annotations

import time
from dataclasses import dataclass

from saem.errors import ModelError, SaemError
from saem.models.registry import ModelKind, ResolvedModel, resolve
from saem.settings import Settings

__all__ = ["ModelStatus", "check_models"]


@dataclass(frozen=True)
class ModelStatus:
    """One configured model, as ``saem models`` shows it."""

    kind: ModelKind
    setting: str
    resolved: ResolvedModel | None
    size_bytes: int | None
    load_seconds: float | None
    usable: bool
    detail: str


def _settings_for(settings: Settings) -> list[tuple[ModelKind, str]]:
    return [("chat", settings.chat_model), ("embed", settings.embed_model), ("rerank", settings.rerank_model)]


def check_models(settings: Settings, *, load: bool = True) -> list[ModelStatus]:
    """Resolve (and, with ``load``, actually load) each configured model.

    Never raises for a bad model: the problem is reported in ``detail`` with ``usable=False``.
    """
    rows: list[ModelStatus] = []
    for kind, setting in _settings_for(settings):
        if kind == "chat" and settings.chat_backend == "openai":
            rows.append(_check_server(settings, load=load))
            continue
        try:
            resolved = resolve(setting, kind, allow_downloads=settings.allow_downloads)
        except ModelError as err:
            rows.append(ModelStatus(kind, setting, None, None, None, False, str(err)))
            continue
        size = resolved.size_bytes()
        if resolved.source == "none":
            rows.append(ModelStatus(kind, setting, resolved, None, None, True, "reranking off"))
            continue
        if not load:
            rows.append(ModelStatus(kind, setting, resolved, size, None, True, "resolved (not loaded)"))
            continue
        start = time.perf_counter()
        try:
            detail = _load(kind, resolved, settings)
        except SaemError as err:
            rows.append(ModelStatus(kind, setting, resolved, size, None, False, str(err)))
            continue
        rows.append(ModelStatus(kind, setting, resolved, size, time.perf_counter() - start, True, detail))
    return rows


def _load(kind: ModelKind, resolved: ResolvedModel, settings: Settings) -> str:
    if kind == "chat":
        from saem.models.gguf import inspect_gguf

        return inspect_gguf(resolved).summary()
    if kind == "embed":
        from saem.models.embedders import SentenceTransformerEmbeddings

        emb = SentenceTransformerEmbeddings(resolved, batch_size=settings.embed_batch_size)
        emb.load()
        return f"{emb.dimension}-d"
    from saem.models.rerankers import load_cross_encoder

    load_cross_encoder(resolved)
    return "cross-encoder"


def _check_server(settings: Settings, *, load: bool) -> ModelStatus:
    """The chat model behind an OpenAI-compatible server: reachable, and serving chat_model?"""
    url = settings.chat_base_url.rstrip("/")
    setting = f"{settings.chat_model} @ {url}"
    if not load:
        return ModelStatus("chat", setting, None, None, None, True, "server (not contacted)")
    import httpx

    start = time.perf_counter()
    try:
        response = httpx.get(f"{url}/models", timeout=5.0)
        response.raise_for_status()
        served = [m.get("id") for m in response.json().get("data", [])]
    except (httpx.HTTPError, ValueError) as err:
        detail = f"server at {url} did not answer: {err} — start it, or set chat_backend = 'llamacpp'"
        return ModelStatus("chat", setting, None, None, None, False, detail)
    return ModelStatus(
        "chat", setting, None, None, time.perf_counter() - start, True, f"server serves: {', '.join(map(str, served))}"
    )
