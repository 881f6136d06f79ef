"""Extractive answers (the documents' own sentences, cited) and the hybrid-mode gate."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document

from saem.app.extractive import check_generated, content_tokens, extractive_answer, is_sentence, question_form
from saem.testing import HashEmbeddings

pytestmark = pytest.mark.unit

EN = Document(
    "# Sampling\nGreedy decoding always picks the most likely token. "
    "Top-p keeps the smallest set of tokens whose probabilities sum to 0.9 or another threshold. "
    "It is also called nucleus sampling. Temperature rescales the logits before sampling."
)
KO = Document(
    "## LoRA\nLoRA는 원래 가중치 행렬 W를 얼려 둡니다. 대신 변화량을 두 개의 작은 행렬의 곱 BA로 표현합니다. "
    "랭크 r은 보통 4에서 64 사이의 값을 씁니다. 학습이 끝나면 BA를 원래 가중치에 더할 수 있습니다."
)
NOISE = Document("Quantization stores weights in fewer bits. GGUF is a file format for llama.cpp models.")


def test_english_question_picks_the_supporting_sentence_with_its_citation() -> None:
    answer = extractive_answer("What is top-p sampling also called?", [NOISE, EN], max_sentences=2)
    assert answer.text.endswith("It is also called nucleus sampling. [2]")
    assert "Quantization" not in answer.text
    extract = answer.extracts[-1]
    assert EN.page_content[extract.start : extract.end] == extract.text
    assert answer.cited == [2]


def test_korean_question_gets_korean_sentences_in_document_order() -> None:
    answer = extractive_answer(
        "LoRA에서 랭크 r은 보통 어떤 값을 쓰나요?", [KO, NOISE], embeddings=HashEmbeddings(256), max_sentences=2
    )
    assert "랭크 r은 보통 4에서 64 사이의 값을 씁니다. [1]" in answer.text
    assert all(e.source == 1 for e in answer.extracts)
    starts = [e.start for e in answer.extracts]
    assert starts == sorted(starts)
    assert "[2]" not in answer.text


def test_headings_duplicates_and_budget() -> None:
    twice = Document("It is also called nucleus sampling. It is also called nucleus sampling!")
    answer = extractive_answer("nucleus sampling called", [twice, EN], max_sentences=3)
    assert answer.text.count("nucleus sampling") == 1  # near-duplicates kept once
    assert "# Sampling" not in answer.text
    short = extractive_answer("tokens sampling logits top-p", [EN], max_sentences=5, max_chars=80)
    assert sum(len(e.text) for e in short.extracts) <= 80 or len(short.extracts) == 1


def test_headings_captions_and_labels_are_never_quoted_as_answers() -> None:
    # the chunk's own headings (its "heading" metadata), a caption and a list label, all on-topic
    notes = Document(
        "Top-k sampling\n\n토큰 예산 짜기\n\n최근 대화 기록: 2,000 토큰\n\n"
        "Top-k sampling keeps only the k most likely tokens and renormalises them.\n\n"
        "대화 기록에는 보통 2,000 토큰의 예산을 줍니다.",
        metadata={"heading": "Decoding › Top-k sampling"},
    )
    en = extractive_answer("What does top-k sampling keep?", [notes], max_sentences=3)
    assert en.text.startswith("Top-k sampling keeps only the k most likely tokens")
    ko = extractive_answer("대화 기록 예산은 몇 토큰인가요?", [notes], max_sentences=3)
    assert "최근 대화 기록: 2,000 토큰 [" not in ko.text and "토큰 예산 짜기 [" not in ko.text
    assert "대화 기록에는 보통 2,000 토큰의 예산을 줍니다. [1]" in ko.text
    assert not is_sentence("Top-k sampling", ["Decoding", "Top-k sampling"])
    assert not is_sentence("최근 대화 기록: 2,000 토큰") and not is_sentence("Options:")
    assert is_sentence("GIMP supports layers, masks, channels and paths in every image")  # long, unpunctuated
    assert is_sentence("토큰화는 텍스트를 토큰으로 나누는 과정입니다.") and is_sentence('He said "yes."')


def test_a_sentence_of_the_form_the_question_asks_for_is_preferred() -> None:
    assert question_form("토큰화란 무엇인가요?") == question_form("What is tokenization?") == "definition"
    assert question_form("어휘에는 토큰이 몇 개 있나요?") == question_form("How many tokens?") == "number"
    assert question_form("그 명령은 어느 메뉴에 있나요?") == question_form("Where is the command?") == "place"
    assert question_form("왜 그런가요?") is None
    doc = Document(
        "토큰화는 자연어 처리에서 중요한 단계로 자주 언급됩니다. "
        "토큰화란 텍스트를 모델이 처리할 수 있는 작은 단위로 나누는 과정입니다."
    )
    answer = extractive_answer("토큰화란 무엇인가요?", [doc], max_sentences=1)
    assert answer.text == "토큰화란 텍스트를 모델이 처리할 수 있는 작은 단위로 나누는 과정입니다. [1]"
    menu = Document("The Curves tool changes the tones of an image. The Curves tool is under Colors → Curves.")
    assert "Colors → Curves" in extractive_answer("Where is the Curves tool?", [menu], max_sentences=1).text


def test_nothing_relevant_gives_an_empty_answer() -> None:
    assert extractive_answer("photosynthesis chlorophyll", [EN, NOISE]).text == ""
    assert extractive_answer("anything", []).text == ""
    assert extractive_answer("anything", [Document("   ")]).text == ""


def test_content_tokens_drop_function_words() -> None:
    assert content_tokens("What does LoRA train instead of the full matrix?") == [
        "lora",
        "train",
        "instead",
        "full",
        "matrix",
    ]


def test_gate_passes_a_supported_answer_in_the_right_language() -> None:
    ok = check_generated(
        "Top-p is also called nucleus sampling [1].",
        question_language="en",
        answer_language="en",
        cited_texts=[EN.page_content],
    )
    assert ok == []


def test_gate_rejects_wrong_language_unsupported_words_and_no_citation() -> None:
    wrong_lang = check_generated(
        "nucleus sampling [1]", question_language="ko", answer_language="en", cited_texts=[EN.page_content]
    )
    assert len(wrong_lang) == 1 and "'en'" in wrong_lang[0]
    invented = check_generated(
        "Top-p was invented by Napoleon at Waterloo [1].",
        question_language="en",
        answer_language="en",
        cited_texts=[EN.page_content],
    )
    assert len(invented) == 1 and "content words" in invented[0]
    uncited = check_generated("nucleus sampling", question_language="en", answer_language="en", cited_texts=[])
    assert uncited == ["the answer cites no retrieved chunk"]
    assert check_generated("  ", question_language="en", answer_language="en", cited_texts=[]) == [
        "the model returned an empty answer"
    ]
