"""The four-arm runner's bookkeeping and the report writer, with a scripted answer function
(no model is loaded): prompts per arm, scoring, aggregation, CI / significance wording, the
leakage refusal, the disagreement table, and the files of the report."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from saem.errors import ConfigError
from saem.evaluation.augment import LeakageError
from saem.evaluation.report import write_report
from saem.evaluation.runner import (
    EvalPrompt,
    EvalResult,
    Generation,
    Passage,
    QAItem,
    Row,
    disagreements,
    guard_leakage,
    load_qa,
    run_arms,
    select_items,
    summarize,
    verdict,
)

pytestmark = pytest.mark.unit


def _item(i: int, lang: str = "ko", kind: str = "factual", answer: str | None = None) -> QAItem:
    answers = [answer or f"답{i}"] if kind != "unanswerable" else []
    evidence = [f"근거 문장 {i}번은 {answers[0]}이라고 말합니다."] if answers else []
    question = f"질문 {i}번은 무엇인가요?" if lang == "ko" else f"What is item {i}?"
    return QAItem(id=f"q{i}", question=question, answers=answers, evidence=evidence, lang=lang, kind=kind)


ITEMS = [_item(1), _item(2), _item(3, "en", answer="alpha"), _item(4, "en", "crosslingual", "beta"),
         _item(5, "ko", "unanswerable"), _item(6, "en", "unanswerable")]  # fmt: skip
GOLD = {item["question"]: (item["answers"] or [""])[0] for item in ITEMS}


def _retrieve(question: str, k: int) -> list[Passage]:
    item = next(i for i in ITEMS if i["question"] == question)
    gold = item["evidence"][0] if item["evidence"] else "관련 없는 문장입니다."
    texts = [gold, "noise one", "noise two", "noise three"][:k]
    return [Passage(n, f"c{item['id']}-{n}", "doc.md", text) for n, text in enumerate(texts, 1)]


class Scripted:
    """base knows nothing, lora knows the Korean items, rag answers every answerable item with a
    citation, and everything with a context declines the unanswerable ones."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, model: str, prompt: str) -> Generation:
        self.calls.append((model, prompt))
        question = re.search(r"(?:질문|Question): (.*)$", prompt, re.M)
        assert question is not None
        gold = GOLD[question.group(1)]
        has_context = "[1] " in prompt
        if not gold:
            text = "모르겠습니다." if has_context else "정답은 42입니다."
        elif has_context:
            text = f"{gold}입니다 [1]."
        elif model == "lora" and re.search(r"[가-힣]", question.group(1)):
            text = gold
        else:
            text = "I don't know."
        return Generation(text, seconds=0.5 if has_context else 0.1, prompt_tokens=len(prompt), completion_tokens=3)


def _result(arms: tuple[str, ...] = ("base", "lora", "rag", "lora+rag")) -> EvalResult:
    rows = run_arms(ITEMS, generate=Scripted(), retrieve=_retrieve, arms=arms, k=3)
    leakage = guard_leakage(["LoRA는 저랭크 행렬을 학습합니다."], ITEMS)
    return summarize(rows, manifest={"model": "fake.gguf"}, leakage=leakage, resamples=2000)


def test_prompts_use_the_template_language_and_context_only_in_rag_arms() -> None:
    gen = Scripted()
    rows = run_arms(ITEMS[:3], generate=gen, retrieve=_retrieve, k=2)
    assert [r.arm for r in rows] == ["base"] * 3 + ["lora"] * 3 + ["rag"] * 3 + ["lora+rag"] * 3
    assert [m for m, _ in gen.calls] == ["base"] * 3 + ["lora"] * 3 + ["base"] * 3 + ["lora"] * 3
    base_ko, rag_ko, rag_en = gen.calls[0][1], gen.calls[6][1], gen.calls[8][1]
    assert "짧게 답하세요" in base_ko and "[1]" not in base_ko and "모르겠습니다" in base_ko
    assert "[1] 근거 문장 1번" in rag_ko and "[2] noise one" in rag_ko and "[3]" not in rag_ko
    assert rag_en.startswith("Answer briefly.") and "I don't know" in rag_en
    assert gen.calls[6][1] == gen.calls[9][1]  # rag and lora+rag see the very same prompt
    assert rows[6].passages == rows[9].passages and rows[6].prompt == gen.calls[6][1]


def test_context_budget_keeps_whole_passages_in_rank_order() -> None:
    rows = run_arms(ITEMS[:1], generate=Scripted(), retrieve=_retrieve, arms=["rag"], k=4, max_context_chars=30)
    assert rows[0].in_prompt == 2 and len(rows[0].passages) == 4  # Recall@k still counts all k
    assert "[2] noise one" in rows[0].prompt and "noise two" not in rows[0].prompt


def test_token_budget_drops_passages_then_cuts_the_first() -> None:
    item = ITEMS[0]
    first = _retrieve(item["question"], 1)
    one = len(EvalPrompt().render(item["question"], "ko", first))
    # room for the first passage only: the rest are dropped, whole
    rows = run_arms(ITEMS[:1], generate=Scripted(), retrieve=_retrieve, arms=["rag"], k=4,
                    fits=lambda text: len(text) <= one)  # fmt: skip
    assert rows[0].in_prompt == 1 and len(rows[0].passages) == 4
    assert first[0].text in rows[0].prompt and "noise" not in rows[0].prompt
    # room for no whole passage: the first is cut to the longest text that fits
    rows = run_arms(ITEMS[:1], generate=Scripted(), retrieve=_retrieve, arms=["rag"], k=4,
                    fits=lambda text: len(text) <= one - 3)  # fmt: skip
    assert rows[0].in_prompt == 1 and len(rows[0].prompt) == one - 3
    assert first[0].text[:-3] in rows[0].prompt and first[0].text not in rows[0].prompt


def test_rows_are_scored_per_metric() -> None:
    result = _result()
    by = {(r.arm, r.id): r for r in result.rows}
    rag = by[("rag", "q1")]
    assert (rag.contains, rag.cited, rag.grounded, rag.recall, rag.correct) == (1.0, [1], True, 1.0, True)
    assert by[("lora", "q1")].exact_match == 1.0 and by[("base", "q1")].abstained
    assert by[("base", "q5")].correct is False and by[("rag", "q5")].correct is True  # declining is right
    assert by[("base", "q1")].recall is None and by[("base", "q1")].grounded is None


def test_aggregation_per_arm_language_and_kind() -> None:
    result = _result()
    base, lora, rag = (result.arm_metrics(a) for a in ("base", "lora", "rag"))
    assert (base.n, base.answerable, base.unanswerable) == (6, 4, 2)
    assert base.contains == 0.0 and lora.contains == 0.5 and rag.contains == 1.0
    assert rag.abstention == 1.0 and base.abstention == 0.0 and base.false_abstention == 1.0
    assert rag.recall_at_k == 1.0 and rag.grounding == 1.0 and rag.cited_rate == 1.0
    assert base.recall_at_k is None and base.grounding is None
    assert rag.latency_p50 == pytest.approx(0.5) and rag.latency_p95 == pytest.approx(0.5)
    assert base.latency_p50 == pytest.approx(0.1) and base.completion_tokens == 3
    assert result.arm_metrics("lora", "lang=ko").contains == 1.0
    assert result.arm_metrics("lora", "lang=en").contains == 0.0
    assert result.arm_metrics("rag", "kind=unanswerable").correct == 1.0
    low, high = rag.ci["correct"]
    assert low == high == 1.0 and base.ci["correct"] == (0.0, 0.0)


def test_comparisons_cover_every_pair_and_say_when_not_significant() -> None:
    result = _result()
    pairs = {(c.a, c.b) for c in result.comparisons}
    assert pairs == {("lora", "base"), ("rag", "base"), ("lora+rag", "base"), ("rag", "lora"),
                     ("lora+rag", "lora"), ("lora+rag", "rag")}  # fmt: skip
    c = next(c for c in result.comparisons if (c.a, c.b, c.metric) == ("rag", "base", "correct"))
    assert c.mean_diff == 1.0 and c.only_a == 6 and c.only_b == 0
    assert (
        c.significant and c.mcnemar_p is not None and c.mcnemar_p < 0.05 and "significant: rag is better" in c.verdict
    )
    same = next(c for c in result.comparisons if (c.a, c.b, c.metric) == ("lora+rag", "rag", "f1"))
    assert same.mean_diff == 0.0 and not same.significant and "not significant (the CI includes 0" in same.verdict
    small = next(c for c in result.comparisons if (c.a, c.b, c.metric) == ("lora", "base", "exact_match"))
    assert small.only_a == 2 and not small.significant and "McNemar p ≥ 0.05" in small.verdict
    assert "n=4" in small.verdict and "only large differences" in small.verdict


def test_verdict_wording() -> None:
    text = verdict("rag", "base", "f1", -0.25, -0.4, -0.1, 30, None, True)
    assert text == "rag − base, f1: -0.250 (95% CI -0.400 to -0.100, n=30) — significant: base is better."
    small = verdict("rag", "base", "correct", 0.5, 0.2, 0.8, 8, 0.03, True)
    assert small.endswith("McNemar p=0.03) — significant: rag is better (n=8: indicative only).")


def test_lora_arms_are_refused_without_a_clean_leakage_check() -> None:
    rows = run_arms(ITEMS, generate=Scripted(), retrieve=_retrieve, arms=["base", "lora"], k=2)
    with pytest.raises(ConfigError, match="leakage"):
        summarize(rows, manifest={})
    with pytest.raises(LeakageError):  # an eval question copied into the training material
        guard_leakage(["학습 자료: " + ITEMS[0]["question"]], ITEMS)
    from saem.evaluation.augment import check_leakage

    report = check_leakage(["학습: " + ITEMS[0]["question"]], [i["question"] for i in ITEMS], raise_on_leak=False)
    with pytest.raises(LeakageError):
        summarize(rows, manifest={}, leakage=report)
    assert summarize([r for r in rows if r.arm == "base"], manifest={}).manifest.get("leakage") is None


def test_unknown_arm_and_rag_without_retriever_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown arm"):
        run_arms(ITEMS, generate=Scripted(), arms=["rag", "oracle"])
    with pytest.raises(ConfigError, match="retriever"):
        run_arms(ITEMS, generate=Scripted(), arms=["rag"])


def test_disagreement_table_lists_divided_items_most_divided_first() -> None:
    result = _result()
    table = disagreements(result)
    ids = [d["id"] for d in table]
    # q1, q2: lora + rag arms right, base wrong (3 vs 1); q3, q4, q5, q6: rag arms right only (2 vs 2)
    assert ids == ["q3", "q4", "q5", "q6", "q1", "q2"]
    assert table[0]["arms"]["base"] == {"answer": "I don't know.", "correct": False, "f1": 0.0}
    assert disagreements(result, limit=2) == table[:2]
    agree = _result(arms=("rag", "lora+rag"))
    assert disagreements(agree) == []


def test_disagreement_table_falls_back_to_f1_spread_when_every_arm_is_wrong() -> None:
    item = _item(7, "en", answer="alpha beta")

    def generate(model: str, prompt: str) -> Generation:
        return Generation("alpha gamma" if "[1] " in prompt else "I don't know.", 0.1)

    rows = run_arms([item], generate=generate, retrieve=lambda q, k: [Passage(1, "c", "d", "x")], arms=["base", "rag"])
    result = summarize(rows, manifest={}, resamples=200)
    assert not any(r.correct for r in rows)
    table = disagreements(result)
    assert [d["id"] for d in table] == ["q7"] and table[0]["arms"]["rag"]["f1"] == pytest.approx(0.5)
    assert disagreements(result, min_f1_spread=0.6) == []


def test_select_items_covers_every_group_in_file_order() -> None:
    picked = select_items(ITEMS, 4)
    assert [i["id"] for i in picked] == ["q1", "q3", "q4", "q5"]
    assert select_items(ITEMS, None) == ITEMS and select_items(ITEMS, 99) == ITEMS


def test_load_qa_reads_the_shared_format_and_names_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps(dict(ITEMS[0]), ensure_ascii=False) + '\n\n{"question": "no id"}\n')
    with pytest.raises(ConfigError, match="qa.jsonl:3"):
        load_qa(path)
    path.write_text(json.dumps(dict(ITEMS[4]), ensure_ascii=False) + "\n")
    assert load_qa(path)[0]["answers"] == [] and load_qa(path)[0]["kind"] == "unanswerable"


def test_prompt_neutralises_nothing_and_renders_deterministically() -> None:
    prompt = EvalPrompt()
    passages = [Passage(1, "c", "d", "{{ 7*7 }} text\n\nwith   spaces")]
    out = prompt.render("What is {{ x }}?", "en", passages)
    assert "[1] {{ 7*7 }} text with spaces" in out and out.endswith("Question: What is {{ x }}?")
    assert prompt.render("What is {{ x }}?", "en", passages) == out


def test_report_writes_markdown_html_plots_and_results(tmp_path: Path) -> None:
    result = _result()
    files = write_report(result, tmp_path / "report")
    names = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert names == ["languages.png", "latency.png", "metrics.png", "report.html", "report.md", "results.json"]
    for png in files.plots:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    page = files.html.read_text(encoding="utf-8")
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == 3 and base64.b64decode(embedded[0]) == files.plots[0].read_bytes()
    assert 'src="metrics.png"' not in page and "<table>" in page and "q3" in page
    md = files.markdown.read_text(encoding="utf-8")
    assert "![Metric per arm](metrics.png)" in md and "## Where the arms disagree" in md
    assert "| rag | 6 |" in md and "significant: rag is better" in md and "Leakage check" in md
    assert "No eval question was found in the 1 training texts (6 questions checked)" in md
    data = json.loads(files.results.read_text(encoding="utf-8"))
    assert len(data["rows"]) == 24 and {r["arm"] for r in data["rows"]} == {"base", "lora", "rag", "lora+rag"}
    assert data["manifest"]["model"] == "fake.gguf" and data["manifest"]["leakage"]["ok"] is True
    assert data["manifest"]["bootstrap"]["resamples"] == 2000
    assert data["rows"][12]["passages"][0]["text"].startswith("근거 문장")
    assert isinstance(Row(**{k: v for k, v in data["rows"][0].items() if k != "passages"}), Row)


def test_a_merged_adapter_is_said_in_the_report(tmp_path: Path) -> None:
    result = _result()
    result.manifest.update(adapter_method="merged", adapter_export_reason="DoRA cannot be expressed in a GGUF LoRA")
    md = write_report(result, tmp_path / "merged").markdown.read_text(encoding="utf-8")
    assert "ran on a merged model" in md and "DoRA cannot be expressed" in md
    plain = write_report(_result(), tmp_path / "plain").markdown.read_text(encoding="utf-8")
    assert "merged model" not in plain
