"""One typed settings object, passed explicitly.

Sources, strongest first: explicit values (CLI flags, keyword arguments) > environment
variables ``SAEM_<KEY>`` > a TOML file (``saem.toml`` in the data dir, or the file given
with ``--config``) > the defaults below. ``Settings.load`` records where each value came
from, so ``saem config show`` can print it.

    >>> from saem.settings import Settings
    >>> s = Settings.load(overrides={"n_threads": 2})
    >>> s.n_threads, s.origin("n_threads")
    (2, 'cli')

There are no module-level settings: every component receives the object it should use.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from saem.errors import ConfigError

__all__ = ["Settings", "Origin", "CONFIG_FILE_NAME", "ENV_PREFIX"]

CONFIG_FILE_NAME = "saem.toml"
ENV_PREFIX = "SAEM_"

Origin = Literal["default", "file", "env", "cli"]


PACKAGED_CHAT_MODEL = "packaged:smollm2"  # the default chat model, and what ``auto`` answer mode tests for


class Settings(BaseSettings):
    """Every knob saem has, with its default. See README.md, 'Settings'."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, frozen=True)

    # where things live
    data_dir: Path = Field(Path(".saem"), description="Folder holding saem.db, the index and saem.toml.")

    # models: "packaged:<name>", a local path, or (with allow_downloads) a hub id
    chat_model: str = Field(PACKAGED_CHAT_MODEL, description="GGUF chat model: packaged name or path to a .gguf.")
    chat_format: str | None = Field(None, description="llama.cpp chat format, for a GGUF without a chat template.")
    chat_backend: Literal["llamacpp", "openai"] = Field(
        "llamacpp", description="'llamacpp' (in process) or 'openai' (an OpenAI-compatible server)."
    )
    chat_base_url: str = Field(
        "http://127.0.0.1:8080/v1", description="Server URL for chat_backend = 'openai' (chat_model = its model name)."
    )
    embed_model: str = Field(
        "packaged:use-m", description="Embedder: packaged name, sentence-transformers dir, or hub id."
    )
    rerank_model: str = Field("none", description="Reranker: 'none', a CrossEncoder dir, or hub id.")
    allow_downloads: bool = Field(False, description="Let hub ids download weights (needs internet).")

    # the chat model at run time
    n_ctx: int = Field(4096, ge=256, le=1_048_576, description="Context window in tokens.")
    n_threads: int = Field(1, ge=1, le=512, description="llama.cpp threads (1 was fastest under load).")
    n_batch: int = Field(256, ge=1, le=65_536, description="llama.cpp prompt batch size.")
    temperature: float = Field(0.2, ge=0.0, le=5.0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(40, ge=0, description="Top-k sampling (0 = off).")
    repeat_penalty: float = Field(1.1, ge=0.0, description="Repetition penalty.")
    max_tokens: int = Field(512, ge=1, description="Tokens reserved for the answer.")
    seed: int = Field(42, description="Sampling seed.")
    kv_cache: Literal["none", "ram"] = Field(
        "none", description="'ram' keeps KV states of alternating sessions (llama.cpp LlamaRAMCache)."
    )

    # ingestion and retrieval
    chunk_tokens: int = Field(256, ge=16, le=8192, description="Target chunk size in embedder tokens.")
    chunk_overlap: int = Field(32, ge=0, description="Overlap between chunks, in tokens.")
    ingest_skip_dirs: list[str] = Field(
        ["_sources", "node_modules", "__pycache__"],
        description="Folders not entered when ingesting a tree: generated copies of other files "
        "(Sphinx's _sources holds the text every HTML page was made from).",
    )
    ingest_loaders: dict[str, str] = Field(
        {},
        description="LangChain document loaders for more file types: suffix -> 'module:Class' "
        "(a BaseLoader taking the file path), e.g. {'.py': 'langchain_community.document_loaders:PythonLoader'}.",
    )
    max_file_bytes: int = Field(50_000_000, ge=1, description="Larger files are skipped.")
    embed_batch_size: int = Field(32, ge=1, le=4096, description="Texts per embedder call.")
    retrieve_k: int = Field(5, ge=1, le=1000, description="Chunks given to the model per question.")
    rerank: Literal["auto", "none", "cross-encoder", "embedder", "llm"] = Field(
        "auto", description="'auto': the cross-encoder when rerank_model is set, else none (measured best offline)."
    )
    fusion: Literal["relative", "rrf"] = Field(
        "relative",
        description="How dense and lexical hits merge: 'relative' adds min-max normalised scores "
        "(measured best), 'rrf' reciprocal rank fusion.",
    )
    rrf_k: int = Field(60, ge=0, description="Reciprocal rank fusion constant (fusion = 'rrf', and MMR).")
    dense_weight: float = Field(1.0, ge=0.0, description="Weight of dense search in fusion (0 = off).")
    lexical_weight: float = Field(
        2.0, ge=0.0, description="Weight of lexical (FTS5) search in fusion, dense being 1 (0 = off; cross-validated)."
    )
    cross_lingual_lexical_weight: float | None = Field(
        0.5,
        ge=0.0,
        description="Lexical weight for a query whose top dense hits favour another script more than "
        "the store does (an English question over Korean documents); None: lexical_weight for every query.",
    )
    neighbour_weight: float = Field(
        0.25,
        ge=0.0,
        description="When dense search decides alone (dense-only search), the share of a chunk's "
        "neighbours' cosine in its score (0 = off).",
    )
    retrieve_candidates: int = Field(50, ge=1, le=10_000, description="Candidates per search stage.")
    rerank_candidates: int = Field(20, ge=0, le=1000, description="Fused hits the reranker scores.")
    rerank_max_chars: int = Field(1000, ge=1, description="Passages are cut to this length for reranking.")
    rerank_batch_size: int = Field(16, ge=1, le=1024, description="Cross-encoder batch size.")
    score_threshold: float | None = Field(
        None, description="Abstain when the best cosine is below this (off: no use-m threshold separated them)."
    )
    abstain_on_missing_terms: bool = Field(
        True, description="Abstain when the question names something (an acronym, GPT-2, …) no document mentions."
    )
    mmr: bool = Field(False, description="Diversify results with maximal marginal relevance.")
    mmr_lambda: float = Field(0.7, ge=0.0, le=1.0, description="MMR trade-off: 1 = relevance only.")
    max_query_chars: int = Field(2000, ge=1, description="Longer queries are cut, with a warning.")

    # the chat turn: what goes into the context window
    history_turns: int = Field(
        4, ge=0, le=1000, description="Recent turns kept verbatim; older ones become summary lines."
    )
    summary_lines: int = Field(8, ge=0, le=1000, description="Most summary lines of older turns kept.")
    history_answer_chars: int = Field(600, ge=1, description="Past answers are clipped to this in the prompt.")
    memory_k: int = Field(5, ge=0, le=1000, description="Long-term memories recalled per turn.")
    memory_keep: int = Field(2, ge=0, le=1000, description="Memories kept before the last chunk gets cut.")
    memory_min_score: float = Field(0.2, ge=-1.0, le=1.0, description="Cosine floor for recalling a memory.")
    memory_extract: bool = Field(False, description="Extract facts with the model after each turn (one more call).")
    condense: Literal["auto", "always", "off"] = Field(
        "auto", description="Rewrite follow-ups into standalone questions: auto = only when they look like one."
    )
    prefill_next_turn: bool = Field(
        True,
        description="After an answer, evaluate the next turn's system prompt and history into the KV cache "
        "while the user reads (background; yields to any model call).",
    )
    answer_language: Literal["auto", "ko", "en"] = Field(
        "auto", description="Language of answers (auto: the question's)."
    )
    answer_mode: Literal["auto", "generate", "extractive", "hybrid"] = Field(
        "auto",
        description="generate; extractive (the documents' own sentences); hybrid (generate, fall back to "
        "extractive when a check fails); auto = extractive for the packaged SmolLM2 (measured: as often "
        "right, 200x faster), else generate.",
    )
    agent_loop: Literal["saem", "langchain"] = Field(
        "saem",
        description="The tool loop behind agent='loop': saem's own, or LangChain's create_agent "
        "(the agents extra; same contract, measured slower per step).",
    )
    prompts_dir: Path | None = Field(None, description="Folder of prompt template overrides (*.jinja).")

    # visibility
    log_prompts: bool = Field(False, description="Write rendered prompts to the log (off: prompts are private).")

    _origins: dict[str, Origin] = PrivateAttr(default_factory=dict)
    _config_file: Path | None = PrivateAttr(default=None)

    @field_validator("ingest_skip_dirs", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        # SAEM_INGEST_SKIP_DIRS="_sources,build": a comma-separated string from the environment
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("ingest_loaders", mode="before")
    @classmethod
    def _suffix_map(cls, value: Any) -> Any:
        # SAEM_INGEST_LOADERS=".py=pkg.mod:Loader,.epub=pkg.mod:Other" from the environment
        if isinstance(value, str):
            pairs = [part.partition("=") for part in value.split(",") if part.strip()]
            value = {k.strip(): v.strip() for k, _, v in pairs}
        if not isinstance(value, dict):
            return value
        out = {}
        for suffix, spec in value.items():
            key = str(suffix).strip().lower()
            if not key.startswith(".") or len(key) < 2 or "/" in key:
                raise ValueError(f"{suffix!r} is not a file suffix like '.py'")
            out[key] = spec
        return out

    @field_validator("chat_model", "embed_model", "rerank_model")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Settings() with keyword arguments only: layering happens in ``load`` so that
        # every value's origin is known. Constructing ``Settings()`` directly gives defaults.
        return (init_settings,)

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        config_file: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Build settings from overrides > ``SAEM_*`` env > TOML file > defaults.

        ``overrides`` with value ``None`` are ignored (an unset CLI flag). Raises
        ``ConfigError`` naming the key for an unknown key, a bad value or an unreadable file.
        """
        environ = os.environ if environ is None else environ
        cli = {k: v for k, v in (overrides or {}).items() if v is not None}
        env = _read_env(environ)
        for layer, values in (("cli", cli), ("env", env)):
            unknown = sorted(set(values) - set(cls.model_fields))
            if unknown:
                raise ConfigError(
                    f"unknown setting {unknown[0]!r} (from {layer})",
                    key=unknown[0],
                    hint="run 'saem config show' to list the settings",
                )

        if config_file is None and environ.get(f"{ENV_PREFIX}CONFIG"):
            config_file = environ[f"{ENV_PREFIX}CONFIG"]
        path = Path(config_file) if config_file is not None else None
        if path is None:
            data_dir = Path(cli.get("data_dir") or env.get("data_dir") or cls.model_fields["data_dir"].default)
            candidate = data_dir / CONFIG_FILE_NAME
            path = candidate if candidate.is_file() else None
        elif not path.is_file():
            raise ConfigError(f"config file not found: {path}", key="config", hint="check the --config path")
        file_values = _read_toml(path) if path is not None else {}
        unknown = sorted(set(file_values) - set(cls.model_fields))
        if unknown:
            raise ConfigError(
                f"unknown setting {unknown[0]!r} in {path}",
                key=unknown[0],
                hint="run 'saem config show' to list the settings",
            )

        merged: dict[str, Any] = {**file_values, **env, **cli}
        try:
            settings = cls(**merged)
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "?"
            origin = "cli" if key in cli else "env" if key in env else "file" if key in file_values else "default"
            raise ConfigError(
                f"invalid setting {key!r} (from {origin}): {first['msg']}",
                key=key,
                hint=f"fix {key} or remove it to use the default",
            ) from err
        origins: dict[str, Origin] = {}
        for name in cls.model_fields:
            origins[name] = (
                "cli" if name in cli else "env" if name in env else "file" if name in file_values else "default"
            )
        settings._origins = origins
        settings._config_file = path
        return settings

    def origin(self, key: str) -> Origin:
        """Where the value of ``key`` came from: default, file, env or cli."""
        if key not in type(self).model_fields:
            raise ConfigError(f"unknown setting {key!r}", key=key)
        return self._origins.get(key, "default")

    @property
    def config_file(self) -> Path | None:
        """The TOML file that was read, if any."""
        return self._config_file

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (validated), marked as coming from the CLI."""
        try:
            new = type(self)(**{**self.model_dump(), **changes})
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "?"
            raise ConfigError(f"invalid setting {key!r}: {first['msg']}", key=key) from err
        new._origins = {**self._origins, **{k: "cli" for k in changes}}
        new._config_file = self._config_file
        return new

    def explain(self) -> list[tuple[str, Any, Origin, str]]:
        """Rows of (key, value, origin, description) for display."""
        rows = []
        for name, field in type(self).model_fields.items():
            rows.append((name, getattr(self, name), self.origin(name), field.description or ""))
        return rows

    def to_json_dict(self) -> dict[str, Any]:
        """Settings as plain JSON-able values (paths as strings)."""
        return self.model_dump(mode="json")

    @property
    def effective_answer_mode(self) -> str:
        """``answer_mode`` with ``auto`` decided (:func:`effective_answer_mode`)."""
        return effective_answer_mode(self.answer_mode, self.chat_model)

    @property
    def db_path(self) -> Path:
        """The SQLite catalogue in the data dir."""
        return self.data_dir / "saem.db"


def effective_answer_mode(answer_mode: str, chat_model: str) -> str:
    """The answer mode a turn uses: ``auto`` is ``extractive`` for the packaged SmolLM2, else ``generate``.

    The one place ``auto`` is decided (the chain, the REPL banner and the demo ask here). Measured
    (``bench/answers.py``, four QA sets): with the 135M packaged model, hybrid answers contain a
    gold answer no more often than extractive ones (the gate discards most generations) and take
    ≈ 20 s against ≈ 0.1 s; the model also cannot write Korean.
    """
    if answer_mode == "auto":
        return "extractive" if chat_model == PACKAGED_CHAT_MODEL else "generate"
    return answer_mode


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """``SAEM_<KEY>`` variables as raw strings (pydantic converts them); ``SAEM_CONFIG`` names the file."""
    prefix = ENV_PREFIX.lower()
    values: dict[str, Any] = {}
    for raw_key, raw_value in environ.items():
        key = raw_key.lower()
        if key.startswith(prefix) and key != f"{prefix}config":
            values[key[len(prefix) :]] = raw_value
    return values


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}", key="config", hint="fix the TOML syntax") from err
    # allow an optional [saem] table
    if set(data) == {"saem"} and isinstance(data["saem"], dict):
        data = data["saem"]
    return dict(data)
