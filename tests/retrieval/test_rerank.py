"""Rerankers with real models: a CrossEncoder fine-tuned here from the packaged MiniLM, and the
pointwise LLM reranker over the packaged SmolLM2 GGUF."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from saem.errors import ModelError
from saem.models.registry import resolve
from saem.retrieval.rerank import CrossEncoderReranker, LlmReranker, Reranker

pytestmark = pytest.mark.integration

NAMES = [
    "tokenizer", "compiler", "thermostat", "telescope", "volcano", "glacier", "battery", "router", "printer",
    "violin", "bridge", "satellite", "microscope", "lighthouse", "parachute", "turbine", "camera", "keyboard",
    "compass", "magnet", "harbour", "orchard", "furnace", "antenna", "elevator", "kettle", "ladder", "mirror",
    "piano", "rocket", "scanner", "tractor", "umbrella", "vaccine", "windmill", "engine", "lantern", "pump",
]  # fmt: skip
FACTS = [
    "splits long inputs into small pieces", "turns heat into steady motion", "stores energy for later use",
    "points ships toward the north", "keeps water out of the house", "measures tiny details of cells",
    "sends signals across the sky", "was built by a team of engineers", "makes a loud sound at night",
    "needs oil every winter",
]  # fmt: skip
HELD_OUT = NAMES[-8:]


def _passage(name: str) -> str:
    return f"The {name} {FACTS[NAMES.index(name) % len(FACTS)]}."


def _question(name: str, i: int) -> str:
    return ["What does the {} do?", "Tell me about the {}.", "Why is the {} useful?"][i % 3].format(name)


def _pairs(names: list[str], seed: int) -> list[tuple[str, str, float]]:
    rng = random.Random(seed)
    out = []
    for i, name in enumerate(names):
        out.append((_question(name, i), _passage(name), 1.0))
        for other in rng.sample([n for n in names if n != name], 1):
            out.append((_question(name, i), _passage(other), 0.0))
    rng.shuffle(out)
    return out


@pytest.fixture(scope="module")
def tuned_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CrossEncoder made from the packaged MiniLM (new 1-logit head), trained here for a few
    steps on synthetic (question, passage) pairs; only the top layers learn, to stay fast."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine, 2 threads train ~8x slower than 1
    base = resolve("packaged:minilm", "embed").path
    assert base is not None
    model = CrossEncoder(str(base), num_labels=1, local_files_only=True, device="cpu")
    hf, tok = model.model, model.tokenizer
    for name, param in hf.named_parameters():
        param.requires_grad = name.startswith(("classifier", "bert.pooler", "bert.encoder.layer.5"))
    pairs = _pairs([n for n in NAMES if n not in HELD_OUT], seed=1)
    optim = torch.optim.AdamW([p for p in hf.parameters() if p.requires_grad], lr=3e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    hf.train()
    for step in range(30):
        batch = [pairs[(step * 12 + i) % len(pairs)] for i in range(12)]
        enc = tok([b[0] for b in batch], [b[1] for b in batch], padding=True, truncation=True, return_tensors="pt")
        loss = loss_fn(hf(**enc).logits.view(-1), torch.tensor([b[2] for b in batch]))
        loss.backward()
        optim.step()
        optim.zero_grad()
    hf.eval()
    torch.set_num_threads(threads)
    out = tmp_path_factory.mktemp("ce") / "tiny-ce"
    model.save(str(out))
    return out


def test_a_tuned_cross_encoder_ranks_relevant_passages_first(tuned_cross_encoder: Path) -> None:
    reranker = CrossEncoderReranker(tuned_cross_encoder, batch_size=4, max_chars=200)
    assert isinstance(reranker, Reranker) and reranker.model_id == str(tuned_cross_encoder)
    passages = [_passage(n) for n in HELD_OUT]
    wins = 0
    for i, name in enumerate(HELD_OUT):
        scores = reranker.rerank(_question(name, i), passages)
        assert len(scores) == len(passages) and all(math.isfinite(s) for s in scores)
        wins += scores.index(max(scores)) == i
    assert wins >= 6, f"held-out questions answered first {wins}/8 times"
    assert reranker.rerank("anything", []) == []


def test_saem_with_a_cross_encoder_folder_reranks_through_retrieve(tuned_cross_encoder: Path, tmp_path: Path) -> None:
    """``rerank_model`` = a CrossEncoder folder: ``Saem.retrieve`` hits come in the cross-encoder's
    order, with its ranks and scores (the embedder is the fake one: only the reranker is real)."""
    from saem.app.saem import Saem
    from saem.testing import HashEmbeddings

    docs = tmp_path / "docs"
    docs.mkdir()
    for name in NAMES[:12]:
        (docs / f"{name}.txt").write_text(_passage(name) + "\n", encoding="utf-8")
    app = Saem(data_dir=tmp_path / "data", rerank_model=str(tuned_cross_encoder), embedder=HashEmbeddings(64))
    app.ingest(docs)
    reranker = app.searcher.reranker
    assert isinstance(reranker, CrossEncoderReranker) and reranker.model_id == str(tuned_cross_encoder)
    question = _question("compiler", 1)
    got = app.retrieve(question, k=5)
    assert [d.metadata["rerank_rank"] for d in got] == [1, 2, 3, 4, 5]
    scores = [d.metadata["rerank_score"] for d in got]
    assert scores == sorted(scores, reverse=True) and all(math.isfinite(s) for s in scores)
    assert reranker.rerank(question, [d.page_content for d in got]) == pytest.approx(scores, abs=1e-4)
    assert got[0].metadata["source"].endswith("compiler.txt")
    result = app.search(question, k=5)
    assert result.reranker == str(tuned_cross_encoder) and result.warnings == [] and "rerank" in result.timings


def test_a_missing_cross_encoder_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        CrossEncoderReranker(tmp_path / "nope")


def test_llm_reranker_scores_are_log_probabilities_and_leave_the_chat_model_usable() -> None:
    from saem.models.llamacpp import LlamaCppChatModel

    llm = LlamaCppChatModel(temperature=0, max_tokens=8, n_ctx=1024)
    before = llm.invoke("Say hello.").content
    reranker = LlmReranker(llm, max_chars=300)
    passages = [
        "Paris is the capital of France. It lies on the Seine.",
        "Bananas are yellow fruit rich in potassium.",
        "x" * 5000,
    ]
    scores = reranker.rerank("What is the capital of France?", passages)
    assert len(scores) == 3 and all(math.isfinite(s) and s <= 0.0 for s in scores)
    assert scores[0] > scores[1]
    assert reranker.rerank("What is the capital of France?", passages) == pytest.approx(scores, abs=1e-4)
    prompt = reranker.render(llm.loaded_engine, "q?", "x" * 5000)
    assert prompt.count("x") == 300 and "Does the passage answer the question?" in prompt
    assert llm.invoke("Say hello.").content == before  # the KV state was left consistent
