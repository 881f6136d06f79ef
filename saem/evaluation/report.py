"""The report of a four-arm run: ``report.md``, a self-contained ``report.html``, PNG plots and
``results.json``.

    >>> files = write_report(result, "out/eval")          # doctest: +SKIP
    >>> files.html.read_text()[:15]                        # doctest: +SKIP
    '<!doctype html>'

Contract:

* ``results.json`` holds every per-question row, the per-arm metrics, the comparisons and the
  manifest (model and adapter hashes, index stats, seeds, versions, the leakage check).
* Plots (matplotlib, Agg backend, no display needed): ``metrics.png`` (metric per arm with 95 %
  bootstrap whiskers), ``languages.png`` (one panel per language), ``latency.png``.
* ``report.html`` embeds the plots as base64 PNG and needs no other file; ``report.md`` links
  them by relative path. Both are built from one list of blocks, so they say the same thing.
* Writes into ``out_dir`` (created), overwriting earlier files of the same names. Deterministic
  apart from the timestamps matplotlib does not write (``metadata`` is cleared).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saem.evaluation.runner import ArmMetrics, EvalResult, disagreements

__all__ = ["ReportFiles", "write_report", "summary_rows"]

_PLOTTED = (
    ("exact_match", "EM"),
    ("f1", "F1"),
    ("contains", "contains"),
    ("rouge_l", "ROUGE-L"),
    ("correct", "correct"),
)
_COLOURS = {"base": "#8c8c8c", "lora": "#e69f00", "rag": "#0072b2", "lora+rag": "#009e73"}
_COLUMNS = (
    "arm",
    "n",
    "EM",
    "F1",
    "contains",
    "ROUGE-L",
    "correct",
    "abstain (unans.)",
    "false abstain",
    "grounded cites",
    "Recall@k",
    "latency p50 / p95 s",
    "out tokens",
)


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    results: Path
    plots: list[Path]


# blocks: ("h", level, text) ("p", text) ("table", headers, rows) ("img", name, caption)
Block = tuple[Any, ...]


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _with_ci(m: ArmMetrics, key: str) -> str:
    value = getattr(m, key)
    if value is None:
        return "–"
    low, high = m.ci.get(key, (None, None))
    return f"{value:.3f}" if low is None else f"{value:.3f} [{low:.2f}, {high:.2f}]"


def summary_rows(result: EvalResult, group: str = "all") -> list[list[str]]:
    """The per-arm table of one group (``all``, ``lang=ko`` …), as strings in ``_COLUMNS`` order."""
    rows = []
    for arm in result.arms:
        m = next((x for x in result.metrics if x.arm == arm and x.group == group), None)
        if m is None:
            continue
        rows.append(
            [
                arm,
                str(m.n),
                _with_ci(m, "exact_match"),
                _with_ci(m, "f1"),
                _with_ci(m, "contains"),
                _num(m.rouge_l),
                _with_ci(m, "correct"),
                _num(m.abstention, 2),
                _num(m.false_abstention, 2),
                _num(m.grounding, 2),
                _num(m.recall_at_k, 2),
                f"{m.latency_p50:.2f} / {m.latency_p95:.2f}",
                _num(m.completion_tokens, 1),
            ]
        )
    return rows


# --- plots -----------------------------------------------------------------------------------------


def _bars(ax: Any, result: EvalResult, group: str, metrics: Sequence[tuple[str, str]]) -> None:
    arms = result.arms
    width = 0.8 / max(1, len(arms))
    for i, arm in enumerate(arms):
        m = next((x for x in result.metrics if x.arm == arm and x.group == group), None)
        if m is None:
            continue
        xs, ys, lows, highs = [], [], [], []
        for j, (key, _) in enumerate(metrics):
            value = getattr(m, key)
            if value is None:
                continue
            low, high = m.ci.get(key, (value, value))
            xs.append(j + (i - (len(arms) - 1) / 2) * width)
            ys.append(value)
            lows.append(max(0.0, value - low))
            highs.append(max(0.0, high - value))
        ax.bar(xs, ys, width, label=arm, color=_COLOURS.get(arm), yerr=[lows, highs], capsize=2, ecolor="#333")
    ax.set_xticks(range(len(metrics)), [label for _, label in metrics])
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)


def _png(fig: Any, path: Path) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    data = buffer.getvalue()
    path.write_bytes(data)
    return data


def make_plots(result: EvalResult, out_dir: Path) -> dict[str, bytes]:
    """Write the three PNGs into ``out_dir``; returns ``{file name: png bytes}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images: dict[str, bytes] = {}
    n = result.arm_metrics(result.arms[0]).n if result.metrics else 0
    fig, ax = plt.subplots(figsize=(8, 3.6))
    _bars(ax, result, "all", _PLOTTED)
    ax.set_title(f"Answer metrics per arm (n={n}; whiskers: 95% bootstrap CI)")
    ax.legend(ncol=len(result.arms), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    images["metrics.png"] = _png(fig, out_dir / "metrics.png")
    plt.close(fig)

    langs = sorted({m.group for m in result.metrics if m.group.startswith("lang=")})
    fig, axes = plt.subplots(1, max(1, len(langs)), figsize=(4.2 * max(1, len(langs)), 3.4), squeeze=False)
    for ax, group in zip(axes[0], langs or ["all"], strict=False):
        _bars(ax, result, group, (("f1", "F1"), ("contains", "contains"), ("correct", "correct")))
        count = next((m.n for m in result.metrics if m.group == group), 0)
        ax.set_title(f"{group.removeprefix('lang=')} questions (n={count})")
    axes[0][0].legend(fontsize=8, loc="upper left")
    images["languages.png"] = _png(fig, out_dir / "languages.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.2))
    seconds = [[r.seconds for r in result.rows if r.arm == arm] for arm in result.arms]
    box = ax.boxplot(seconds, patch_artist=True)
    ax.set_xticks(range(1, len(result.arms) + 1), result.arms)
    for patch, arm in zip(box["boxes"], result.arms, strict=True):
        patch.set_facecolor(_COLOURS.get(arm, "#ccc"))
    for i, arm in enumerate(result.arms, 1):
        m = result.arm_metrics(arm)
        ax.annotate(
            f"{m.prompt_tokens:.0f} in / {m.completion_tokens:.0f} out tok",
            (i, 0),
            fontsize=7,
            ha="center",
            va="bottom",
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.set_ylabel("seconds per answer")
    ax.set_ylim(bottom=0)
    ax.set_title("Latency per arm (mean prompt / answer tokens below)")
    images["latency.png"] = _png(fig, out_dir / "latency.png")
    plt.close(fig)
    return images


# --- content -----------------------------------------------------------------------------------------


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _blocks(result: EvalResult) -> list[Block]:
    man = result.manifest
    n_items = len({r.id for r in result.rows})
    blocks: list[Block] = [("h", 1, f"saem evaluation — {' vs '.join(result.arms)}")]
    blocks.append(
        (
            "p",
            f"{n_items} questions × {len(result.arms)} arms, one GGUF ({man.get('model', '?')}), "
            "the same prompt template, temperature 0, a fixed seed. Answer metrics are over answerable "
            "questions; `correct` = the answer contains a gold answer, or declines an unanswerable "
            "question. Brackets: 95% bootstrap CI.",
        )
    )
    if man.get("adapter_method") == "merged":
        blocks.append(
            (
                "p",
                "**The lora arms ran on a merged model**, not on a GGUF LoRA over the base: "
                f"{man.get('adapter_export_reason') or 'no GGUF LoRA could be written'}. Their answers are the "
                "adapted model's, but their latency is that of a larger unquantised model.",
            )
        )
    blocks.append(("h", 2, "Setup"))
    setup = [
        [key, _short(json.dumps(man[key], ensure_ascii=False) if not isinstance(man[key], str) else man[key], 320)]
        for key in (
            *("model", "model_sha256", "adapter", "adapter_sha256", "adapter_method", "adapter_export_reason"),
            *("adapter_training", "qa_file", "docs"),
            *("exclude", "index", "k", "sampling", "prompt_template", "seeds", "versions", "bootstrap"),
            "wall_seconds",
        )
        if key in man
    ]
    blocks.append(("table", ["what", "value"], setup))
    leak = man.get("leakage")
    blocks.append(("h", 2, "Leakage check"))
    if leak:
        blocks.append(
            (
                "p",
                f"{'No eval question was' if leak['ok'] else str(len(leak['leaks'])) + ' eval question(s) were'}"
                f" found in the "
                f"{leak['train_texts']} training texts ({leak['questions']} questions checked). "
                f"Normalisation: {leak['normalisation']}. Exact: {leak['exact_rule']}. "
                f"Near: {leak['near_rule']}.",
            )
        )
    else:
        blocks.append(("p", "No lora arm was run, so no training material was checked."))
    blocks.append(("h", 2, "Results, all questions"))
    blocks.append(("table", list(_COLUMNS), summary_rows(result)))
    for key, title in (("lang", "By language"), ("kind", "By kind")):
        groups = sorted({m.group for m in result.metrics if m.group.startswith(key + "=")})
        blocks.append(("h", 2, title))
        for group in groups:
            blocks.append(("h", 3, group))
            blocks.append(("table", list(_COLUMNS), summary_rows(result, group)))
    blocks.append(("h", 2, "Differences between arms"))
    blocks.append(
        (
            "p",
            "Paired over the same questions (a − b). Significant: the 95% CI excludes 0, or for EM and "
            "`correct` McNemar's exact p < 0.05. No correction for the number of comparisons.",
        )
    )
    blocks.append(
        (
            "table",
            ["a − b", "metric", "n", "diff", "95% CI", "McNemar p", "significant"],
            [
                [
                    f"{c.a} − {c.b}",
                    c.metric,
                    str(c.n),
                    f"{c.mean_diff:+.3f}",
                    f"[{c.low:+.3f}, {c.high:+.3f}]",
                    _num(c.mcnemar_p),
                    "yes" if c.significant else "no",
                ]
                for c in result.comparisons
            ],
        )
    )
    blocks += [("p", c.verdict) for c in result.comparisons if c.metric in ("correct", "f1")]
    blocks.append(("h", 2, "Where the arms disagree"))
    rows = [
        [d["id"], _short(d["question"], 90), _short(" / ".join(d["answers"]) or "(unanswerable)", 50)]
        + [
            ("✓ " if d["arms"][a]["correct"] else "✗ ") + _short(d["arms"][a]["answer"], 110) if a in d["arms"] else "–"
            for a in result.arms
        ]
        for d in disagreements(result)
    ]
    if rows:
        blocks.append(("table", ["id", "question", "gold", *result.arms], rows))
    else:
        blocks.append(("p", "The arms agree on every question."))
    blocks.append(("h", 2, "Plots"))
    blocks += [
        ("img", "metrics.png", "Metric per arm"),
        ("img", "languages.png", "Per language"),
        ("img", "latency.png", "Latency"),
    ]
    return blocks


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if block[0] == "h":
            out.append("#" * block[1] + " " + block[2])
        elif block[0] == "p":
            out.append(block[1])
        elif block[0] == "table":
            headers, rows = block[1], block[2]
            out.append("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
            out[-1] += "".join("\n| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows)
        elif block[0] == "img":
            out.append(f"![{block[2]}]({block[1]})")
    return "\n\n".join(out) + "\n"


_CSS = (
    "body{font-family:system-ui,'Noto Sans KR',sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}"
    "td,th{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}th{background:#f3f3f3}"
    "img{max-width:100%;display:block;margin:.5em 0 1.5em}code{background:#f3f3f3}"
)


def render_html(blocks: Sequence[Block], images: dict[str, bytes]) -> str:
    esc = html.escape
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(str(blocks[0][2]))}</title><style>{_CSS}</style></head><body>",
    ]
    for block in blocks:
        if block[0] == "h":
            out.append(f"<h{block[1]}>{esc(block[2])}</h{block[1]}>")
        elif block[0] == "p":
            out.append(f"<p>{esc(block[1])}</p>")
        elif block[0] == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block[2])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif block[0] == "img" and block[1] in images:
            data = base64.b64encode(images[block[1]]).decode("ascii")
            out.append(
                f'<figure><img alt="{esc(block[2])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(block[2])}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(result: EvalResult, out_dir: str | Path) -> ReportFiles:
    """Write ``report.md``, ``report.html``, the PNGs and ``results.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = make_plots(result, out)
    blocks = _blocks(result)
    md, page, results = out / "report.md", out / "report.html", out / "results.json"
    md.write_text(render_markdown(blocks), encoding="utf-8")
    page.write_text(render_html(blocks, images), encoding="utf-8")
    payload = result.to_dict() | {"files": ["report.md", "report.html", "results.json", *images]}
    results.write_text(json.dumps(payload, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return ReportFiles(md, page, results, [out / name for name in images])
