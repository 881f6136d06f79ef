"""Storage: everything saem keeps, in one database file (``saem.db``) plus a rebuildable cache.

* :mod:`.catalogue` — sources, chunks (text, spans, headings, embeddings), the lexical index
  (FTS5), ingest runs and meta; the SQLite engine every handle uses (WAL, busy timeout,
  ``BEGIN IMMEDIATE`` writes, ``secure_delete``) and the data-dir lock.
* :mod:`.index` — the FAISS file: a cache of the chunks' embeddings, checked against the
  catalogue at load and rebuilt from it.
* :mod:`.chat` — chat sessions and messages, long-term memories, the key-value store and turn
  traces, behind ``MemoryDB``.

Ingestion, retrieval, memory and the app import from here; nothing here imports them.
"""
