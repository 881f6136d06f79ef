"""Training material from chunks (deterministic paraphrases, Korean and English) and the leakage guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saem.evaluation.augment import (
    LeakageError,
    as_examples,
    build_training_material,
    check_leakage,
    cloze_terms,
    language,
)
from saem.evaluation.lora import TrainExample

pytestmark = pytest.mark.unit

KO = (
    "LoRA는 저랭크 행렬로 모델을 미세 조정하는 기법이다. GPT-2는 바이트 수준 BPE를 사용하며 어휘 크기가 50,257개입니다."
)
EN = "BPE was originally proposed in 1994 by Philip Gage as a data compression technique."


def test_material_is_deterministic_and_ordered_by_chunk() -> None:
    first = build_training_material([KO, EN])
    assert first == build_training_material([KO, EN])
    assert [item.kind for item in first][:1] == ["chunk"] and first[0].text == KO
    chunks = [item.chunk for item in first]
    assert chunks == sorted(chunks) and set(chunks) == {0, 1}
    assert {item.lang for item in first if item.chunk == 0} == {"ko"}
    assert {item.lang for item in first if item.chunk == 1} == {"en"}


@pytest.mark.parametrize("chunk", [KO, EN])
def test_several_distinct_variations_per_fact(chunk: str) -> None:
    sentence = chunk.split(". ")[0].rstrip(".") + "."
    items = [i for i in build_training_material([chunk], variations=3) if sentence in i.text or i.answer == sentence]
    statements = [i.text for i in items if i.kind == "statement"]
    questions = [i for i in build_training_material([chunk], variations=3) if i.kind == "question"]
    assert len(statements) == 3 and len(set(statements)) == 3
    assert all(sentence in s and s != sentence for s in statements)
    first_fact_questions = [q for q in questions if q.answer == sentence]
    assert len({q.text for q in first_fact_questions}) == 3


@pytest.mark.parametrize("chunk", [KO, EN])
def test_cloze_items_blank_one_term_that_is_the_answer(chunk: str) -> None:
    clozes = [i for i in build_training_material([chunk]) if i.kind == "cloze"]
    assert len(clozes) >= 3
    assert len({c.answer for c in clozes}) == len(clozes)
    for c in clozes:
        assert c.text.count("____") == 1
        assert c.answer not in c.text.replace("____", "")
        filled = c.text.replace("____", c.answer)
        assert any(s.strip().rstrip(".") in filled for s in chunk.split(". "))


def test_variations_controls_the_count() -> None:
    one = build_training_material([EN], variations=1)
    assert [i.kind for i in one] == ["chunk", "statement", "question", "cloze"]
    assert not build_training_material([EN], variations=2, include_chunks=False)[0].kind == "chunk"
    with pytest.raises(ValueError):
        build_training_material([EN], variations=0)


def test_korean_topic_questions_use_the_right_particle() -> None:
    items = build_training_material(
        ["임베딩은 텍스트를 벡터로 바꾸는 방법이다.", "모델는 틀린 예문이 아니라 주제만 본다."]
    )
    texts = {i.text for i in items if i.kind == "question"}
    assert "임베딩은 무엇인가요?" in texts  # 딩 has a final consonant
    assert "모델는 무엇인가요?" not in texts and "모델은 무엇인가요?" in texts  # 델 has one too (ㄹ)
    lora = {i.text for i in build_training_material([KO]) if i.kind == "question"}
    assert "LoRA는 무엇인가요?" in lora  # Latin: read as no final consonant


def test_cloze_terms_prefer_numbers_then_terms() -> None:
    assert cloze_terms("GPT-2는 바이트 수준 BPE를 사용하며 어휘 크기가 50,257개입니다.", "ko") == [
        "50,257",
        "GPT-2",
        "BPE",
    ]
    assert cloze_terms(EN, "en", limit=2) == ["1994", "Philip Gage"]
    assert cloze_terms("짧다.", "ko") == []


def test_language() -> None:
    assert language("LoRA는 저랭크 기법이다") == "ko"
    assert language("LoRA uses low-rank matrices") == "en"
    assert language("12345") == "en"


def test_as_examples_routes_raw_text_and_qa_pairs() -> None:
    items = build_training_material([EN], variations=1)
    seen: list[tuple[str, str]] = []

    def chat(question: str, answer: str) -> TrainExample:
        seen.append((question, answer))
        return TrainExample(f"<q>{question}</q>", answer)

    examples = as_examples(items, chat)
    assert len(examples) == len(items)
    assert examples[0] == TrainExample("", EN)
    assert [e.prompt.startswith("<q>") for e in examples] == [bool(i.answer) for i in items]
    assert len(seen) == 2


# --- leakage -------------------------------------------------------------------------------------


def test_clean_material_passes_with_a_report_of_the_check() -> None:
    report = check_leakage([KO, EN], ["LoRA 기법은 어떤 행렬을 쓰나요?", "Who proposed BPE?"])
    assert report.ok and report.leaks == []
    assert (report.train_texts, report.questions) == (2, 2)
    assert "NFKC" in report.normalisation and "12-character" in report.near_rule


def test_exact_leak_is_refused_despite_case_spacing_and_punctuation() -> None:
    question = "GPT-2의 어휘 크기는 몇 개인가요?"
    material = [KO, "질문: gpt 2 의 어휘크기는, 몇 개인가요!!"]
    with pytest.raises(LeakageError) as caught:
        check_leakage(material, ["Who proposed BPE?", question])
    (leak,) = caught.value.report.leaks
    assert (leak.question_index, leak.kind, leak.train_index) == (1, "exact", 1)
    assert "1 eval question" in str(caught.value)


def test_near_leak_is_found_and_can_be_reported_without_raising() -> None:
    question = "Which technique did Philip Gage originally propose in 1994 for compressing data?"
    material = ["which technique did philip gage originally propose in 1994 for compressing datum"]
    exact_copy = check_leakage(material, [question], raise_on_leak=False)
    assert [leak.kind for leak in exact_copy.leaks] == ["near"]
    assert exact_copy.leaks[0].overlap >= 0.9
    changed = question.replace("originally", "first")
    assert check_leakage(material, [changed], raise_on_leak=False).ok  # a real paraphrase is not a leak


def test_material_from_the_sample_corpus_does_not_leak_the_sample_qa_set(repo_root: Path) -> None:
    data = repo_root / "data"
    chunks = [
        part
        for path in sorted(data.glob("*.*"))
        if path.suffix in {".md", ".txt", ".html"}
        for part in path.read_text(encoding="utf-8").split("\n\n")
        if part.strip()
    ]
    questions = [json.loads(line)["question"] for line in (data / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    material = build_training_material(chunks)
    report = check_leakage([item.text + "\n" + item.answer for item in material], questions)
    assert report.ok and report.questions == len(questions) > 10
    assert len(material) > 5 * len(chunks) // 2
