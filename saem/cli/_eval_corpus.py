"""The documents ``saem lora train`` and ``saem eval`` learn and retrieve from: ingested into a data
dir of their own, checked to hold nothing else (no QA set), and read back or hashed chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saem.errors import ConfigError
from saem.settings import Settings

__all__ = ["chunk_rows", "index_sha256", "ingest_docs"]


def ingest_docs(settings: Settings, docs: Path, skip: Sequence[Path], exclude: Sequence[str]) -> Any:
    """Ingest ``docs`` (minus ``exclude`` globs and the ``skip`` files) and check the data dir holds
    nothing else: a source outside ``docs`` or matching them (a QA set ingested earlier) would leak
    into the rag arms or the training material, so it is a ``ConfigError``."""
    from fnmatch import fnmatchcase

    from saem.app.saem import Saem
    from saem.cli.ingest_cmd import ProgressView, show_report

    if not docs.is_dir():
        raise ConfigError(f"{docs} is not a folder", hint="--docs takes the folder of documents")
    globs = [*exclude, *(p.name for p in skip)]
    app = Saem(settings)
    with ProgressView(enabled=True) as view:
        report = app.ingest(docs, exclude=globs, progress=view.update)
    show_report(report, quiet_unchanged=True)
    root = docs.resolve()
    stray = [
        path
        for path, _ in chunk_rows(settings, texts=False)
        if not Path(path).resolve().is_relative_to(root) or any(fnmatchcase(Path(path).name, g) for g in globs)
    ]
    if stray:
        raise ConfigError(
            f"the data dir {settings.data_dir} holds {len(set(stray))} source(s) that are not part of {docs}"
            f" or are excluded, e.g. {stray[0]}",
            hint="use a fresh data dir (the default is one inside --out)",
        )
    if app.stats().chunks == 0:
        raise ConfigError(f"no chunks were ingested from {docs}", hint="check the folder holds documents")
    return app


def chunk_rows(settings: Settings, *, texts: bool = True) -> list[tuple[str, str]]:
    """``(source path, chunk text)`` of every chunk in the data dir, ordered by source path then
    position (deterministic); with ``texts=False`` one row per source and empty texts."""
    from sqlalchemy import select

    from saem.store.catalogue import Catalogue, Chunk, Source

    cat = Catalogue.open(settings.db_path, readonly=True)
    try:
        with cat.read() as s:
            if not texts:
                return [(path, "") for path in s.scalars(select(Source.path).order_by(Source.path))]
            query = select(Source.path, Chunk.text).join(Source, Chunk.source_id == Source.id)
            return [(row[0], row[1]) for row in s.execute(query.order_by(Source.path, Chunk.ord))]
    finally:
        cat.close()


def index_sha256(settings: Settings) -> str:
    """A content hash of what the rag arms retrieve from: every chunk's text in source-name and
    position order, with the embedding model and chunker. Folder paths are left out, so the same
    documents ingested elsewhere hash the same; any change to a chunk or a model changes it."""
    import hashlib

    digest = hashlib.sha256(f"{settings.embed_model}\n{settings.chunk_tokens}:{settings.chunk_overlap}\n".encode())
    for path, text in sorted(chunk_rows(settings), key=lambda row: Path(row[0]).name):  # stable: by name, then ord
        digest.update(Path(path).name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()
