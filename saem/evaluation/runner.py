"""The four-arm comparison: base, lora, rag, lora+rag — same GGUF, same prompt, greedy decoding.

    >>> items = load_qa("data/qa.jsonl")                                           # doctest: +SKIP
    >>> rows = run_arms(items, generate=gen, retrieve=retrieve, k=5)               # doctest: +SKIP
    >>> result = summarize(rows, manifest={...}, leakage=guard_leakage(texts, items))  # doctest: +SKIP
    >>> write_report(result, "out/")        # saem.evaluation.report             # doctest: +SKIP

Contract:

* Every arm renders ``prompt.jinja`` (next to this module) with the item's language; only the
  rag arms get a context block, built from ``retrieve(question, k)`` with ``[n]`` numbering.
  Retrieval runs once per question, so rag and lora+rag see the same chunks.
* ``generate(model, prompt)`` and ``retrieve(question, k)`` are injected, so nothing here loads a
  model: unit tests pass fakes; ``saem.cli.eval_cmd.LlamaCppGenerator`` serves one GGUF with and
  without the GGUF LoRA (temperature 0, a fixed seed) and ``saem_retriever`` wraps
  ``Saem.retrieve``. Rows come out in arm order, then item order.
* Answer metrics (EM, token F1, containment, ROUGE-L) are over answerable items; abstention over
  unanswerable items; citation grounding and Recall@k of gold evidence for the rag arms.
* Comparisons are paired over the same items (``a − b``, bootstrap 95 % CI). A difference is
  called significant when the CI excludes 0, for binary metrics (EM, ``correct``) when McNemar's
  exact p < 0.05. No multiple-comparison correction: read the p-values with that in mind.
* The lora arms need a :class:`~saem.evaluation.augment.LeakageReport` (``guard_leakage``)
  proving no eval question is in the training material; :func:`summarize` refuses otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any, Literal, NotRequired, Protocol, TypedDict

from saem.errors import ConfigError
from saem.evaluation.augment import LeakageError, LeakageReport, check_leakage
from saem.evaluation.metrics import (
    answer_scores,
    citation_grounding,
    is_abstention,
    mcnemar_exact,
    paired_bootstrap,
    percentile,
    retrieval_scores,
)

__all__ = [
    "ARMS", "ArmMetrics", "Comparison", "EvalPrompt", "EvalResult", "Generation", "Generator",
    "Passage", "QAItem", "Retriever", "Row", "disagreements", "guard_leakage", "load_qa", "run_arms",
    "select_items", "summarize",
]  # fmt: skip

Arm = Literal["base", "lora", "rag", "lora+rag"]
ARMS: tuple[Arm, ...] = ("base", "lora", "rag", "lora+rag")
ANSWER_METRICS = ("exact_match", "f1", "contains", "rouge_l")
COMPARED = (*ANSWER_METRICS, "correct")
TEMPLATE = Path(__file__).with_name("prompt.jinja")


class QAItem(TypedDict):
    """One line of a QA file (``shared/eval/README.md``)."""

    id: str
    question: str
    answers: list[str]
    evidence: list[str]
    lang: str
    kind: str
    source: NotRequired[str | None]


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk as the prompt numbers it (``n`` from 1)."""

    n: int
    chunk_id: str
    source: str
    text: str
    score: float | None = None


@dataclass(frozen=True)
class Generation:
    text: str
    seconds: float
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Generator(Protocol):
    def __call__(self, model: Literal["base", "lora"], prompt: str) -> Generation: ...


Retriever = Callable[[str, int], list[Passage]]


@dataclass
class Row:
    """One answer of one arm to one item, with its scores (``None`` where a metric does not apply)."""

    id: str
    arm: str
    lang: str
    kind: str
    question: str
    answers: list[str]
    answer: str
    seconds: float
    prompt_tokens: int
    completion_tokens: int
    answerable: bool
    abstained: bool
    exact_match: float
    f1: float
    contains: float
    rouge_l: float
    correct: bool  # contains a gold answer (answerable) / abstained (unanswerable)
    passages: list[Passage] = field(default_factory=list)
    in_prompt: int = 0  # passages that fit the context budget
    cited: list[int] = field(default_factory=list)
    recall: float | None = None
    grounded: bool | None = None
    prompt: str = ""


def load_qa(path: str | Path) -> list[QAItem]:
    """Read a JSON Lines QA file. Raises ``ConfigError`` naming the line of a malformed item."""
    items: list[QAItem] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            item = QAItem(id=str(raw["id"]), question=str(raw["question"]), answers=list(raw.get("answers") or []),
                          evidence=list(raw.get("evidence") or []), lang=str(raw.get("lang", "en")),
                          kind=str(raw.get("kind", "factual")), source=raw.get("source"))  # fmt: skip
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{path}:{number}: not a QA item ({err})", hint="see shared/eval/README.md") from err
        items.append(item)
    return items


def select_items(items: Sequence[QAItem], limit: int | None) -> list[QAItem]:
    """The first ``limit`` items, taken round-robin over (lang, kind) groups in file order, so a
    small run still covers every kind and language. ``None`` or ``limit >= len``: all, in order."""
    if limit is None or limit >= len(items):
        return list(items)
    groups: dict[tuple[str, str], list[QAItem]] = {}
    for item in items:
        groups.setdefault((item["lang"], item["kind"]), []).append(item)
    picked: list[QAItem] = []
    while len(picked) < limit:
        for group in groups.values():
            if group and len(picked) < limit:
                picked.append(group.pop(0))
    order = {item["id"]: i for i, item in enumerate(items)}
    return sorted(picked, key=lambda item: order[item["id"]])


class EvalPrompt:
    """``prompt.jinja`` rendered in a sandbox; ``render`` is deterministic and thread-safe."""

    def __init__(self, path: Path = TEMPLATE) -> None:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self.source = path.read_text(encoding="utf-8")
        env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)
        self._template = env.from_string(self.source)

    def render(self, question: str, lang: str, passages: Sequence[Passage] = ()) -> str:
        documents = [{"n": p.n, "text": " ".join(p.text.split())} for p in passages]
        lang = "ko" if lang == "ko" else "en"
        return self._template.render(lang=lang, question=question, documents=documents).strip()


def guard_leakage(train_texts: Iterable[str], items: Sequence[QAItem]) -> LeakageReport:
    """``check_leakage`` of the eval questions against the training texts; raises ``LeakageError``."""
    return check_leakage(train_texts, [item["question"] for item in items])


def run_arms(
    items: Sequence[QAItem],
    *,
    generate: Generator,
    retrieve: Retriever | None = None,
    arms: Sequence[str] = ARMS,
    k: int = 5,
    max_context_chars: int = 6000,
    prompt: EvalPrompt | None = None,
    progress: Callable[[Row], None] | None = None,
    fits: Callable[[str], bool] | None = None,
) -> list[Row]:
    """Answer every item in every arm; see the module docstring. Passages are put in the prompt
    in rank order while their texts fit ``max_context_chars`` and the rendered prompt ``fits``
    (the model's context, counted with its tokenizer); when even the first passage does not fit
    it is cut until it does. Raises ``ValueError`` for an unknown arm, ``ConfigError`` for a rag
    arm without ``retrieve``."""
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}: choose from {list(ARMS)}")
    rag = [arm for arm in arms if arm.endswith("rag")]
    if rag and retrieve is None:
        raise ConfigError(f"arms {rag} need a retriever (ingest the documents first)")
    prompt = prompt or EvalPrompt()
    retrieved = {item["id"]: retrieve(item["question"], k) for item in items} if rag and retrieve else {}
    rows: list[Row] = []
    for arm in arms:
        for item in items:
            passages = retrieved.get(item["id"], []) if arm.endswith("rag") else []
            given = _fit(passages, max_context_chars)
            text = prompt.render(item["question"], item["lang"], given)
            if fits is not None and given and not fits(text):
                q, lang, check = item["question"], item["lang"], fits
                given = _fit_tokens(given, lambda ps: check(prompt.render(q, lang, ps)))  # noqa: B023 — used at once
                text = prompt.render(item["question"], item["lang"], given)
            out = generate("lora" if arm.startswith("lora") else "base", text)
            row = score_row(item, arm, out, passages, len(given), k)
            row.prompt = text
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows


def _fit(passages: Sequence[Passage], budget: int) -> list[Passage]:
    out: list[Passage] = []
    used = 0
    for p in passages:
        if out and used + len(p.text) > budget:
            break
        out.append(p)
        used += len(p.text)
    return out


def _fit_tokens(passages: Sequence[Passage], fits: Callable[[Sequence[Passage]], bool]) -> list[Passage]:
    """The longest prefix of ``passages`` whose prompt fits; if none does, the first passage cut
    (binary search on its length) to the longest text that fits, possibly empty."""
    out = list(passages)
    while len(out) > 1 and not fits(out):
        out.pop()
    if fits(out):
        return out
    first, lo, hi = out[0], 0, len(out[0].text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits([replace(first, text=first.text[:mid])]):
            lo = mid
        else:
            hi = mid - 1
    return [replace(first, text=first.text[:lo])]


def score_row(item: QAItem, arm: str, out: Generation, passages: Sequence[Passage], in_prompt: int, k: int) -> Row:
    """Score one answer (pure). Citations are the ``[n]`` markers naming a passage in the prompt."""
    from saem.app.citations import parse_markers

    answers, evidence = list(item["answers"]), list(item["evidence"])
    answerable = bool(answers)
    scores = answer_scores(out.text, answers) if answerable else None
    abstained = is_abstention(out.text)
    cited = sorted({m.n for m in parse_markers(out.text) if 1 <= m.n <= in_prompt})
    rag = arm.endswith("rag")
    recall = grounded = None
    if rag and evidence:
        recall = retrieval_scores([p.text for p in passages], evidence, k).recall
        texts = [p.text for p in passages if p.n in cited]
        grounded = citation_grounding([texts], [item]).grounded == 1 if texts else None
    return Row(
        id=item["id"], arm=arm, lang=item["lang"], kind=item["kind"], question=item["question"], answers=answers,
        answer=out.text, seconds=round(out.seconds, 4), prompt_tokens=out.prompt_tokens,
        completion_tokens=out.completion_tokens, answerable=answerable, abstained=abstained,
        exact_match=scores.exact_match if scores else 0.0, f1=scores.f1 if scores else 0.0,
        contains=scores.contains if scores else 0.0, rouge_l=scores.rouge_l if scores else 0.0,
        correct=bool(scores.contains) if scores else abstained, passages=list(passages), in_prompt=in_prompt,
        cited=cited, recall=recall, grounded=grounded,
    )  # fmt: skip


# --- aggregation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmMetrics:
    """Means of one arm over one group (``all``, ``lang=ko``, ``kind=multi`` …); None = not applicable.

    ``ci`` holds bootstrap 95 % intervals of the answer metrics and ``correct``."""

    arm: str
    group: str
    n: int
    answerable: int
    unanswerable: int
    exact_match: float | None
    f1: float | None
    contains: float | None
    rouge_l: float | None
    correct: float
    abstention: float | None  # share of unanswerable items declined
    false_abstention: float | None  # share of answerable items declined
    grounding: float | None  # answers citing ≥ 1 relevant passage / answers citing any (rag arms)
    cited_rate: float | None
    recall_at_k: float | None
    latency_mean: float
    latency_p50: float
    latency_p95: float
    completion_tokens: float
    prompt_tokens: float
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """``a − b`` on one metric over the same items; ``verdict`` says it in words."""

    a: str
    b: str
    metric: str
    n: int
    mean_diff: float
    low: float
    high: float
    p_value: float
    mcnemar_p: float | None
    only_a: int | None
    only_b: int | None
    significant: bool
    verdict: str


@dataclass
class EvalResult:
    """Everything a report needs; ``to_dict`` is what ``results.json`` holds."""

    arms: list[str]
    rows: list[Row]
    metrics: list[ArmMetrics]
    comparisons: list[Comparison]
    manifest: dict[str, Any]

    def arm_metrics(self, arm: str, group: str = "all") -> ArmMetrics:
        return next(m for m in self.metrics if m.arm == arm and m.group == group)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arms": self.arms,
            "manifest": self.manifest,
            "metrics": [asdict(m) for m in self.metrics],
            "comparisons": [asdict(c) for c in self.comparisons],
            "rows": [asdict(r) for r in self.rows],
        }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ci(values: Sequence[float], seed: int, resamples: int) -> tuple[float, float]:
    result = paired_bootstrap(values, [0.0] * len(values), resamples=resamples, seed=seed)
    return (result.low, result.high)


def _arm_metrics(arm: str, group: str, rows: Sequence[Row], seed: int, resamples: int) -> ArmMetrics:
    ans = [r for r in rows if r.answerable]
    una = [r for r in rows if not r.answerable]
    rag = arm.endswith("rag")
    cited_rows = [r for r in ans if r.cited]
    seconds = sorted(r.seconds for r in rows)
    ci = {m: _ci([getattr(r, m) for r in ans], seed, resamples) for m in ANSWER_METRICS if ans}
    ci["correct"] = _ci([float(r.correct) for r in rows], seed, resamples)
    return ArmMetrics(
        arm=arm, group=group, n=len(rows), answerable=len(ans), unanswerable=len(una),
        exact_match=_mean([r.exact_match for r in ans]), f1=_mean([r.f1 for r in ans]),
        contains=_mean([r.contains for r in ans]), rouge_l=_mean([r.rouge_l for r in ans]),
        correct=sum(r.correct for r in rows) / len(rows),
        abstention=_mean([float(r.abstained) for r in una]), false_abstention=_mean([float(r.abstained) for r in ans]),
        grounding=_mean([float(bool(r.grounded)) for r in cited_rows]) if rag else None,
        cited_rate=_mean([float(bool(r.cited)) for r in ans]) if rag else None,
        recall_at_k=_mean([r.recall for r in ans if r.recall is not None]) if rag else None,
        latency_mean=sum(seconds) / len(seconds), latency_p50=percentile(seconds, 50),
        latency_p95=percentile(seconds, 95),
        completion_tokens=sum(r.completion_tokens for r in rows) / len(rows),
        prompt_tokens=sum(r.prompt_tokens for r in rows) / len(rows), ci=ci,
    )  # fmt: skip


def compare(a: str, b: str, metric: str, rows_a: Sequence[Row], rows_b: Sequence[Row], *, seed: int = 0,
            resamples: int = 10_000) -> Comparison:  # fmt: skip
    """Paired comparison of two arms on one metric (rows in the same item order). ``correct`` is
    over all items, the answer metrics over answerable ones."""
    if [r.id for r in rows_a] != [r.id for r in rows_b]:
        raise ValueError("the two arms were not scored on the same items in the same order")
    pairs = [(x, y) for x, y in zip(rows_a, rows_b, strict=True) if metric == "correct" or x.answerable]
    if not pairs:
        return Comparison(a, b, metric, 0, 0.0, 0.0, 0.0, 1.0, None, None, None, False,
                          f"{a} vs {b}, {metric}: no items to compare")  # fmt: skip
    xs = [float(getattr(x, metric)) for x, _ in pairs]
    ys = [float(getattr(y, metric)) for _, y in pairs]
    boot = paired_bootstrap(xs, ys, resamples=resamples, seed=seed)
    mc = mcnemar_exact([v >= 1.0 for v in xs], [v >= 1.0 for v in ys]) if metric in ("exact_match", "correct") else None
    significant = mc.p_value < 0.05 if mc is not None else not (boot.low <= 0.0 <= boot.high)
    return Comparison(a, b, metric, boot.n, boot.mean_diff, boot.low, boot.high, boot.p_value,
                      mc.p_value if mc else None, mc.only_a if mc else None, mc.only_b if mc else None,
                      significant, verdict(a, b, metric, boot.mean_diff, boot.low, boot.high, boot.n,
                                           mc.p_value if mc else None, significant))  # fmt: skip


def verdict(a: str, b: str, metric: str, diff: float, low: float, high: float, n: int, mcnemar_p: float | None,
            significant: bool) -> str:  # fmt: skip
    """One sentence: the difference, its interval, and whether it is significant (and why not).
    Under 20 items a significant result is flagged as indicative: percentile bootstrap intervals
    are too narrow on so few items."""
    text = f"{a} − {b}, {metric}: {diff:+.3f} (95% CI {low:+.3f} to {high:+.3f}, n={n}"
    text += f", McNemar p={mcnemar_p:.3g})" if mcnemar_p is not None else ")"
    if significant:
        better = a if diff > 0 else b
        caveat = f" (n={n}: indicative only)" if n < 20 else ""
        return f"{text} — significant: {better} is better{caveat}."
    why = "McNemar p ≥ 0.05" if mcnemar_p is not None else "the CI includes 0"
    small = f"; with n={n} only large differences can show" if n < 20 else ""
    return f"{text} — not significant ({why}{small})."


def summarize(
    rows: Sequence[Row],
    *,
    manifest: Mapping[str, Any],
    leakage: LeakageReport | None = None,
    seed: int = 0,
    resamples: int = 10_000,
) -> EvalResult:
    """Metrics per arm and group, and every pairwise comparison (later arm − earlier arm).

    Raises ``ConfigError`` when a lora arm was run without a leakage report, ``LeakageError``
    when the report found leaks. The leakage report is recorded in the manifest."""
    arms = list(dict.fromkeys(r.arm for r in rows))
    if any(arm.startswith("lora") for arm in arms):
        if leakage is None:
            raise ConfigError("the lora arms need a leakage check of the training material (guard_leakage)")
        if not leakage.ok:
            raise LeakageError(leakage)
    by_arm = {arm: [r for r in rows if r.arm == arm] for arm in arms}
    groups: list[tuple[str, str | None, str | None]] = [("all", None, None)]
    for key in ("lang", "kind"):
        groups += [(f"{key}={value}", key, value) for value in sorted({getattr(r, key) for r in rows})]
    metrics = [
        _arm_metrics(arm, name, chosen, seed, resamples)
        for arm in arms
        for name, key, value in groups
        if (chosen := [r for r in by_arm[arm] if key is None or getattr(r, key) == value])
    ]
    comparisons = [
        compare(a, b, metric, by_arm[a], by_arm[b], seed=seed, resamples=resamples)
        for b, a in combinations(arms, 2)
        for metric in COMPARED
    ]
    full = dict(manifest)
    full["bootstrap"] = {"seed": seed, "resamples": resamples, "confidence": 0.95}
    if leakage is not None:
        full["leakage"] = asdict(leakage) | {"ok": leakage.ok}
    return EvalResult(arms, list(rows), metrics, comparisons, full)


def disagreements(result: EvalResult, limit: int = 10, min_f1_spread: float = 0.2) -> list[dict[str, Any]]:
    """Items where the arms disagree: first those split on ``correct`` (most divided first), then
    those whose token F1 differs by at least ``min_f1_spread`` between arms (widest first); ties in
    file order. ``{"id", "question", "answers", "kind", "lang", "arms": {arm: {"answer", "correct",
    "f1"}}}``."""
    by_id: dict[str, dict[str, Row]] = {}
    for row in result.rows:
        by_id.setdefault(row.id, {})[row.arm] = row
    out = []
    for index, (item_id, arms) in enumerate(by_id.items()):
        right = sum(r.correct for r in arms.values())
        f1s = [r.f1 for r in arms.values()]
        split = min(right, len(arms) - right)
        if split or max(f1s) - min(f1s) >= min_f1_spread:
            first = next(iter(arms.values()))
            out.append((-split, min(f1s) - max(f1s), index, {
                "id": item_id, "question": first.question, "answers": first.answers, "kind": first.kind,
                "lang": first.lang,
                "arms": {a: {"answer": r.answer, "correct": r.correct, "f1": r.f1} for a, r in arms.items()},
            }))  # fmt: skip
    return [entry for *_, entry in sorted(out, key=lambda t: t[:3])][:limit]
