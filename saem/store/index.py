"""The dense index: FAISS, derived from the catalogue and rebuildable from it at any time.

Layout in the data dir:

* ``index.faiss`` — ``IndexIDMap2(IndexFlatIP(dim))`` over int64 chunk ids; vectors are
  L2-normalised, so inner product = cosine. Written with ``faiss.write_index`` to a temp file
  in the same folder, fsynced, then ``os.replace``-d: a reader sees the old or the new file,
  never half of one.
* ``index.json`` — the sidecar ``{"count", "model", "dim", "generation"}``, replaced the same way
  and always *after* the index file, so it never vouches for a file that is not there yet.

``open_index`` compares the sidecar and the file's own ``ntotal`` with the catalogue (count of
chunks embedded by the current model, model id, dimension, ``generation``) and rebuilds from
the stored embeddings when anything disagrees — after a crash, a manual delete, or a run
killed between the SQLite commit and the index write.

    index = open_index(data_dir, catalogue)           # None when nothing is ingested yet
    hits = index.search(query_vector, k=5)            # [(chunk_id, cosine), ...]

Not thread-safe for writes (an ingest holds the data-dir lock); concurrent ``search`` on one
``VectorIndex`` is safe (FAISS flat search is read-only).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from saem.errors import IndexCorrupt
from saem.store.catalogue import Catalogue, Chunk, get_meta, iter_embeddings

__all__ = [
    "INDEX_FILE",
    "META_FILE",
    "IndexMeta",
    "VectorIndex",
    "atomic_write",
    "catalogue_state",
    "open_index",
    "read_meta",
]

INDEX_FILE = "index.faiss"
META_FILE = "index.json"
SINGLE_THREAD_FLOATS = 1 << 27  # 512 MB of vectors (≈ 260k x 512): ≈ 30 ms on one thread


@dataclass(frozen=True)
class IndexMeta:
    """What an index file holds, and which catalogue generation it was built from."""

    count: int
    model: str
    dim: int
    generation: int


def _faiss() -> Any:
    import faiss

    return faiss


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation as float32 (zero rows stay zero)."""
    arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


class VectorIndex:
    """A FAISS ``IndexIDMap2`` over normalised vectors keyed by chunk id."""

    def __init__(self, index: Any, dim: int) -> None:
        self.index = index
        self.dim = dim

    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        faiss = _faiss()
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), dim)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(normalise(vectors), np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        return int(self.index.remove_ids(np.ascontiguousarray(np.asarray(ids, dtype=np.int64))))

    def ids(self) -> np.ndarray:
        """Every chunk id in the index (order unspecified)."""
        return np.asarray(_faiss().vector_to_array(self.index.id_map), dtype=np.int64)

    def search(
        self, vector: np.ndarray | Sequence[float], k: int, *, ids: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The ``k`` nearest chunks to one query vector: ``(chunk_id, cosine)``, best first.
        With ``ids`` (int64 chunk ids), the nearest among those only: a FAISS ``IDSelectorBatch``
        over the same flat scan, skipping the others' distances.

        Up to ``SINGLE_THREAD_FLOATS`` stored floats, the scan runs on one OpenMP thread (set
        for the calling thread only, then restored): one query is a memory-bound pass, and
        waking FAISS's thread team costs more than it saves — on 2 busy cores a 107k x 64
        search took 24 ms with 2 threads and 0.8 ms with 1; 107k x 512 (USE-m), p95 48 ms with
        2 threads and 13 ms with 1.
        """
        if self.ntotal == 0 or k <= 0 or (ids is not None and ids.size == 0):
            return []
        query = normalise(np.asarray(vector))
        n = min(k, self.ntotal) if ids is None else min(k, int(ids.size), self.ntotal)
        faiss = _faiss()
        extra: dict[str, Any] = {}
        if ids is not None:
            # the local keeps the selector alive until the search returns
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
            extra["params"] = faiss.SearchParameters(sel=selector)
        if self.ntotal * self.dim > SINGLE_THREAD_FLOATS:
            scores, found = self.index.search(query, n, **extra)
        else:
            threads = faiss.omp_get_max_threads()  # the calling thread's setting (an OpenMP ICV)
            faiss.omp_set_num_threads(1)
            try:
                scores, found = self.index.search(query, n, **extra)
            finally:
                faiss.omp_set_num_threads(threads)
        return [(int(i), float(s)) for i, s in zip(found[0], scores[0], strict=True) if i != -1]

    def save(self, data_dir: str | Path, meta: IndexMeta) -> None:
        """Atomically replace ``index.faiss`` then ``index.json`` in ``data_dir``."""
        folder = Path(data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / INDEX_FILE, lambda tmp: _faiss().write_index(self.index, str(tmp)))
        payload = json.dumps(asdict(meta)).encode()
        atomic_write(folder / META_FILE, lambda tmp: tmp.write_bytes(payload))


def atomic_write(target: Path, write: Any) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_meta(data_dir: str | Path) -> IndexMeta | None:
    """The sidecar, or None when it is missing or unreadable."""
    try:
        raw = json.loads((Path(data_dir) / META_FILE).read_text())
        return IndexMeta(int(raw["count"]), str(raw["model"]), int(raw["dim"]), int(raw["generation"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def catalogue_state(cat: Catalogue | Session) -> IndexMeta | None:
    """What the index should hold according to SQLite, or None before the first embedding.

    Given a ``Session``, reads within its transaction (a consistent snapshot).
    """
    if isinstance(cat, Catalogue):
        with cat.read() as s:
            return catalogue_state(s)
    s = cat
    model = get_meta(s, "embed_model")
    dim = get_meta(s, "dim")
    generation = int(get_meta(s, "generation") or 0)
    if model is None or dim is None:
        return None
    count = s.scalar(select(func.count(Chunk.id)).where(Chunk.embed_model == model)) or 0
    return IndexMeta(int(count), model, int(dim), generation)


def load_index_file(data_dir: str | Path) -> VectorIndex | None:
    """The index file as it is on disk, or None when missing or unreadable."""
    path = Path(data_dir) / INDEX_FILE
    if not path.is_file():
        return None
    try:
        index = _faiss().read_index(str(path))
    except RuntimeError:
        return None
    return VectorIndex(index, int(index.d))


def rebuild(session: Session, state: IndexMeta) -> VectorIndex:
    """A fresh index from the embeddings stored in SQLite, read in ``session``'s snapshot.

    Raises ``IndexCorrupt`` when a stored embedding has the wrong size.
    """
    index = VectorIndex.empty(state.dim)
    try:
        for ids, vecs in iter_embeddings(session, state.model):
            if vecs.shape[1] != state.dim:
                raise ValueError(f"a stored embedding has {vecs.shape[1]} dims, expected {state.dim}")
            index.add(ids, vecs)
    except ValueError as err:
        raise IndexCorrupt(
            f"cannot rebuild the vector index from the catalogue: {err}",
            hint="re-ingest your folders with the current embedder",
        ) from err
    return index


def is_fresh(data_dir: str | Path, state: IndexMeta | None, index: VectorIndex | None) -> bool:
    """True when the sidecar, the loaded index and the catalogue state all agree."""
    if state is None:
        return index is None or index.ntotal == 0
    meta = read_meta(data_dir)
    return index is not None and meta == state and index.ntotal == state.count and index.dim == state.dim


def open_index(data_dir: str | Path, cat: Catalogue, *, persist: bool = True) -> VectorIndex | None:
    """The verified index for ``cat``: loaded when fresh, else rebuilt from SQLite (and saved
    when ``persist``). None when nothing has been embedded yet. Idempotent.

    Raises ``IndexCorrupt`` when the catalogue's embeddings cannot make an index.
    """
    with cat.read() as s:  # one snapshot: the state and the rebuilt vectors agree
        state = catalogue_state(s)
        if state is None:
            return None
        index = load_index_file(data_dir)
        if is_fresh(data_dir, state, index):
            return index
        index = rebuild(s, state)
    if persist:
        index.save(data_dir, state)
    return index


def update_after_run(
    data_dir: str | Path,
    cat: Catalogue,
    *,
    start_generation: int,
    removed_ids: Sequence[int],
    added: Sequence[tuple[Sequence[int], np.ndarray]],
) -> None:
    """Bring the index file up to date after an ingest that held the data-dir lock.

    When the file on disk matched the catalogue at ``start_generation`` (the run's start), the
    run's delta (``removed_ids``, ``added``) is applied to it; otherwise, or when the result
    does not add up to the catalogue's count, it is rebuilt from SQLite. Idempotent.
    """
    folder = Path(data_dir)
    with cat.read() as s:
        state = catalogue_state(s)
        if state is None:
            return
        meta = read_meta(folder)
        if meta == state and (folder / INDEX_FILE).is_file():
            return  # nothing changed and the file vouches for itself
        index = None
        if meta is not None and (meta.model, meta.dim, meta.generation) == (state.model, state.dim, start_generation):
            index = load_index_file(folder)
            if index is not None and index.ntotal == meta.count:
                index.remove(np.asarray(removed_ids, dtype=np.int64))
                for ids, vecs in added:
                    index.add(np.asarray(ids, dtype=np.int64), vecs)
            if index is not None and index.ntotal != state.count:
                index = None
        if index is None:
            index = rebuild(s, state)
    index.save(folder, state)
