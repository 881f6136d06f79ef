"""kill -9 an ingest at random moments, rerun it, and compare with one clean run.

The ingest runs in a subprocess (a small script written next to the data) with a deterministic
fake embedder that sleeps a little per text, so a run lasts a couple of seconds and a kill can
land anywhere: while loading, between two file transactions, inside one, while writing the
FAISS file. After the rerun the data dir must hold exactly what a clean run gives: the same
sources and chunks (texts, spans, vectors, FTS tokens), FAISS ids = SQLite ids, no orphans, and
``PRAGMA integrity_check`` = ok.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saem.store.index import load_index_file, read_meta

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

WORKER = """
import sys, time
sys.path.insert(0, {repo!r})
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from saem.ingest.pipeline import ingest
from saem.text.analyzer import analyze
from saem.settings import Settings

class SlowFake(Embeddings):
    model_id = "slow-fake-16"
    def __init__(self):
        self.inner = DeterministicFakeEmbedding(size=16)
    def embed_documents(self, texts):
        time.sleep(0.01 * len(texts))
        return self.inner.embed_documents(texts)
    def embed_query(self, text):
        return self.inner.embed_query(text)

analyze("한국어 준비")  # build Kiwi before saying we are ready
settings = Settings(data_dir=sys.argv[1], chunk_tokens=40, chunk_overlap=8, embed_batch_size=4)
print("ready", flush=True)
report = ingest(settings, [sys.argv[2]], embedder=SlowFake())
print("done", report.added, report.updated, report.renamed, report.removed, flush=True)
"""

SENTENCES_KO = [
    "토크나이저는 텍스트를 토큰으로 나눕니다.",
    "어텐션은 각 토큰이 다른 토큰을 얼마나 볼지 정합니다.",
    "양자화는 가중치의 비트 수를 줄여 메모리를 아낍니다.",
    "컨텍스트 창은 모델이 한 번에 읽는 토큰 수입니다.",
    "로라는 작은 행렬만 학습해서 모델을 조정합니다.",
]
SENTENCES_EN = [
    "Top-p sampling keeps the smallest set of likely tokens.",
    "Temperature rescales the logits before the softmax.",
    "Retrieval finds the chunks that answer a question.",
    "An embedding maps a text to a vector of numbers.",
    "A reranker reorders candidates with a cross-encoder.",
]


def make_doc(rng: random.Random, n: int) -> str:
    lines = [f"# 문서 {n}\n"]
    for p in range(rng.randint(2, 5)):
        pool = SENTENCES_KO if (n + p) % 2 else SENTENCES_EN
        lines.append(" ".join(rng.choice(pool) + f" ({n}.{p}.{i})" for i in range(rng.randint(2, 6))))
    return "\n\n".join(lines) + "\n"


def write_v1(root: Path, rng: random.Random) -> None:
    (root / "sub").mkdir(parents=True)
    for n in range(24):
        folder = root / "sub" if n % 3 == 0 else root
        (folder / f"doc{n:02d}.md").write_text(make_doc(rng, n), encoding="utf-8")


def mutate_to_v2(root: Path, rng: random.Random) -> None:
    files = sorted(root.rglob("*.md"))
    for f in files[0:4]:
        f.write_text(f.read_text(encoding="utf-8") + "\n추가된 문단입니다. A new paragraph.\n", encoding="utf-8")
    for f in files[4:7]:
        f.rename(f.with_name("renamed-" + f.name))
    for f in files[7:10]:
        f.unlink()
    for n in range(100, 106):
        (root / f"new{n}.md").write_text(make_doc(rng, n), encoding="utf-8")


def run_worker(script: Path, data: Path, root: Path, kill_after: float | None) -> float:
    """Run one ingest; SIGKILL it ``kill_after`` seconds after it is ready (None: let it finish).

    Returns the seconds from ready to exit.
    """
    proc = subprocess.Popen(
        [sys.executable, str(script), str(data), str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        ready = time.perf_counter()
        if kill_after is None:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            return time.perf_counter() - ready
        time.sleep(kill_after)
        proc.kill()  # SIGKILL: no cleanup handlers run
        proc.communicate(timeout=30)
        return time.perf_counter() - ready
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def snapshot(data: Path) -> dict[str, object]:
    """Everything that must match a clean run (ids may differ: they are compared structurally)."""
    db = data / "saem.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute(
            "SELECT count(*) FROM chunks WHERE source_id NOT IN (SELECT id FROM sources)"
        ).fetchone() == (0,)
        sources = sorted(conn.execute("SELECT path, sha256, n_chunks, embed_model, chunker FROM sources").fetchall())
        chunks = sorted(
            conn.execute(
                "SELECT s.path, c.ord, c.text, c.start, c.end, c.embedding, c.embed_model, f.tokens "
                "FROM chunks c JOIN sources s ON s.id = c.source_id JOIN chunks_fts f ON f.rowid = c.id"
            ).fetchall()
        )
        ids = {r[0] for r in conn.execute("SELECT id FROM chunks")}
        fts_ids = {r[0] for r in conn.execute("SELECT rowid FROM chunks_fts")}
        running = conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]
    assert fts_ids == ids
    assert running == 0
    index = load_index_file(data)
    meta = read_meta(data)
    assert index is not None and meta is not None
    assert set(index.ids().tolist()) == ids and index.ntotal == len(ids) == meta.count
    for path, n_chunks in ((s[0], s[2]) for s in sources):
        assert sum(1 for c in chunks if c[0] == path) == n_chunks
    return {"sources": sources, "chunks": chunks}


def killed_mid_run(data: Path) -> bool:
    """True when the kill left a run marked 'running' (it landed after the run started)."""
    try:
        with sqlite3.connect(data / "saem.db") as conn:
            return bool(conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0])
    except sqlite3.Error:
        return False


@pytest.mark.timeout(900)
def test_kill_at_random_points_then_rerun_equals_a_clean_run(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(repo=str(REPO)), encoding="utf-8")
    root = tmp_path / "docs"
    write_v1(root, random.Random(7))

    reference = tmp_path / "ref"
    duration = run_worker(script, reference, root, None)
    expected_v1 = snapshot(reference)
    seeds = [11, 23, 37]
    landed_mid_run = 0
    for seed in seeds:
        rng = random.Random(seed)
        data = tmp_path / f"v1-{seed}"
        for _ in range(rng.randint(1, 2)):  # one or two kills before the run that finishes
            run_worker(script, data, root, rng.uniform(0.05, 0.9) * duration)
            landed_mid_run += killed_mid_run(data)
        run_worker(script, data, root, None)
        assert snapshot(data) == expected_v1, f"seed {seed}"

    # second phase: from the v1 state, edits + renames + deletions + additions
    mutate_to_v2(root, random.Random(99))
    duration = run_worker(script, reference, root, None)
    expected_v2 = snapshot(reference)
    for seed in seeds:
        rng = random.Random(seed * 2)
        data = tmp_path / f"v1-{seed}"
        for _ in range(rng.randint(1, 2)):
            run_worker(script, data, root, rng.uniform(0.05, 0.9) * duration)
            landed_mid_run += killed_mid_run(data)
        run_worker(script, data, root, None)
        assert snapshot(data) == expected_v2, f"seed {seed} (update)"
    assert landed_mid_run >= 3, "too few kills landed inside a run: the test tested little"
