"""Storage: everything saem keeps, in one database file (``saem.db``) plus a rebuildable cache.

* :mod:`.db` — the one database handle, ``Database`` (an engine and its sessions, opened from a
  path or a URL; WAL, busy timeout, ``BEGIN IMMEDIATE`` writes, ``secure_delete`` on SQLite
  files) and the one metadata every table is declared on.
* :mod:`.catalogue` — sources, chunks (text, spans, headings, embeddings), the lexical index
  (FTS5), ingest runs and meta, and the data-dir lock.
* :mod:`.index` — the FAISS file: a cache of the chunks' embeddings, checked against the
  catalogue at load and rebuilt from it.
* :mod:`.filters` — the one metadata-filter compiler (``{"k": v}``, ``$eq``, ``$in``, ``$glob``)
  behind both vector-store faces, so a filter means the same everywhere.
* :mod:`.chat` — chat sessions and messages, long-term memories, the key-value store and turn
  traces.

Ingestion, retrieval, memory and the app import from here; nothing here imports them.
"""
