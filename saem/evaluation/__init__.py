"""Evaluation: RAG vs a LoRA-tuned model — training material, LoRA training, GGUF conversion, metrics.

The pieces of the evaluation flow (see ``ARCHITECTURE.md``):

* :mod:`~saem.evaluation.augment` — training material from chunks, and the leakage guard;
* :mod:`~saem.evaluation.lora` — train a peft LoRA adapter on CPU (torch, transformers, peft);
* :mod:`~saem.evaluation.gguf_lora` — convert it to a GGUF LoRA for llama.cpp (gguf);
* :mod:`~saem.evaluation.metrics` — answer/abstention/citation/retrieval metrics, paired tests.

Names are exported lazily: ``import saem.evaluation`` imports none of torch, peft, gguf or scipy.

    >>> from saem.evaluation import token_f1
    >>> token_f1("서울은", ["서울"])
    0.8
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from saem._lazy import lazy_attribute

if TYPE_CHECKING:
    from saem.evaluation.augment import (
        LeakageError,
        LeakageReport,
        TrainingItem,
        as_examples,
        build_training_material,
        check_leakage,
    )
    from saem.evaluation.gguf_lora import (
        AdapterNotConvertible,
        ConversionReport,
        convert_adapter,
        export_for_llama_cpp,
        merge_adapter,
    )
    from saem.evaluation.lora import (
        BaseModel,
        LoraSettings,
        Manifest,
        StepReport,
        TrainExample,
        TrainResult,
        load_base,
        train_lora,
    )
    from saem.evaluation.metrics import (
        AbstentionScores,
        AnswerScores,
        BootstrapResult,
        GroundingScores,
        McNemarResult,
        RetrievalScores,
        abstention_scores,
        answer_scores,
        citation_grounding,
        contains_answer,
        exact_match,
        is_abstention,
        is_relevant,
        mcnemar_exact,
        mean_retrieval_scores,
        normalize_answer,
        paired_bootstrap,
        percentile,
        retrieval_scores,
        rouge_l,
        token_f1,
    )

_MODULES: dict[str, tuple[str, ...]] = {
    "augment": ("LeakageError", "LeakageReport", "TrainingItem", "as_examples", "build_training_material",
                "check_leakage"),
    "gguf_lora": ("AdapterNotConvertible", "ConversionReport", "convert_adapter", "export_for_llama_cpp",
                  "merge_adapter"),
    "lora": ("BaseModel", "LoraSettings", "Manifest", "StepReport", "TrainExample", "TrainResult", "load_base",
             "train_lora"),
    "metrics": ("AbstentionScores", "AnswerScores", "BootstrapResult", "GroundingScores", "McNemarResult",
                "RetrievalScores", "abstention_scores", "answer_scores", "citation_grounding", "contains_answer",
                "exact_match", "is_abstention", "is_relevant", "mcnemar_exact", "mean_retrieval_scores",
                "normalize_answer", "paired_bootstrap", "percentile", "retrieval_scores", "rouge_l", "token_f1"),
}  # fmt: skip
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "AbstentionScores", "AdapterNotConvertible", "AnswerScores", "BaseModel", "BootstrapResult", "ConversionReport",
    "GroundingScores", "LeakageError", "LeakageReport", "LoraSettings", "Manifest", "McNemarResult",
    "RetrievalScores", "StepReport", "TrainExample", "TrainResult", "TrainingItem", "abstention_scores",
    "answer_scores", "as_examples", "build_training_material", "check_leakage", "citation_grounding",
    "contains_answer", "convert_adapter", "exact_match", "export_for_llama_cpp", "is_abstention", "is_relevant",
    "load_base", "mcnemar_exact", "mean_retrieval_scores", "merge_adapter", "normalize_answer", "paired_bootstrap",
    "percentile", "retrieval_scores", "rouge_l", "token_f1", "train_lora",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, {k: f"saem.evaluation.{v}" for k, v in _EXPORTS.items()}, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
