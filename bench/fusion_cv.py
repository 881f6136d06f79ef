"""Choose the fusion weights by cross-validation over the four development sets; report held-out folds.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/fusion_cv.py --store-dir /tmp/saem-cv   # stores kept for reruns

For each QA set of ``bench/qa.py`` the folder is ingested whole with the defaults (USE-m) into
``<store-dir>/<set>``. Every answerable question is searched (``HybridSearcher``, k = 10) at
every point of a grid over ``lexical_weight`` × ``cross_lingual_lexical_weight`` (dense weight
1), and scored by R@5 and MRR@10. The objective is the mean over the sets of (R@5 + MRR@10) / 2,
so each set counts the same however many questions it has.

* **5-fold cross-validation**, folds stratified by set (seed 0): for each fold the grid point
  with the best objective on the other four folds is chosen and the held-out fold is scored
  with it. The held-out table is the estimate of what the chosen rule does on questions it was
  not chosen on; the in-sample best is printed beside it (the gap is what fitting buys).
* **Leave one set out**: the point chosen on three sets, scored on the fourth: does the rule
  carry over to a folder of another kind?

Prints the tables; writes ``bench/results/fusion_cv.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from qa import GROUPS, REPO, group_of, judge, load_sets  # noqa: E402

RESULTS = REPO / "bench" / "results" / "fusion_cv.json"
LEXICAL = (0.5, 1.0, 1.5, 2.0, 3.0)
CROSS = (0.0, 0.25, 0.5, 1.0)
FOLDS = 5

Point = tuple[float, float]  # (lexical_weight, cross_lingual_lexical_weight)
Scores = dict[Point, dict[tuple[str, str], tuple[float, float]]]  # point -> (set, id) -> (R@5, MRR@10)


def measure(store_dir: Path, data: Path, sets: set[str] | None) -> tuple[Scores, dict[tuple[str, str], str]]:
    """R@5 and MRR@10 of every answerable question at every grid point; and each question's group."""
    import torch

    from saem.app.saem import Saem
    from saem.retrieval.hybrid import HybridSearcher

    torch.set_num_threads(1)
    scores: Scores = defaultdict(dict)
    groups: dict[tuple[str, str], str] = {}
    for qa in load_sets(data, sets, work=store_dir):
        app = Saem(data_dir=store_dir / qa.name, embed_model="packaged:use-m")
        t0 = time.perf_counter()
        report = app.ingest(qa.folder)
        print(f"{qa.name}: {app.stats().chunks} chunks ({report.chunks_embedded} embedded, "
              f"{time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
        base = HybridSearcher(app.settings.data_dir, app.embedder)
        for lw in LEXICAL:
            for xw in CROSS:
                searcher = base.with_config(lexical_weight=lw, cross_lingual_lexical_weight=xw)
                for item in qa.answerable:
                    hits = searcher.search(item["question"], k=10).hits
                    flags = [judge(item, h.source, h.text) for h in hits]
                    mrr = next((1.0 / (i + 1) for i, f in enumerate(flags) if f), 0.0)
                    scores[(lw, xw)][(qa.name, item["id"])] = (float(any(flags[:5])), mrr)
                    groups[(qa.name, item["id"])] = group_of(item)
    return scores, groups


def table(keyed: dict[tuple[str, str], tuple[float, float]], groups: dict[tuple[str, str], str]) -> dict[str, Any]:
    """set -> group -> {n, R@5, MRR@10} for the questions in ``keyed``."""
    rows: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for key, value in keyed.items():
        rows[key[0]]["all"].append(value)
        rows[key[0]][groups[key]].append(value)
    return {
        s: {g: {"n": len(v), "R@5": sum(r for r, _ in v) / len(v), "MRR@10": sum(m for _, m in v) / len(v)}
            for g, v in by_group.items()}
        for s, by_group in rows.items()
    }  # fmt: skip


def objective(per_item: dict[tuple[str, str], tuple[float, float]], keys: list[tuple[str, str]]) -> float:
    by_set: dict[str, list[float]] = defaultdict(list)
    for key in keys:
        r, m = per_item[key]
        by_set[key[0]].append((r + m) / 2)
    return sum(sum(v) / len(v) for v in by_set.values()) / len(by_set)


def best_point(scores: Scores, keys: list[tuple[str, str]]) -> Point:
    # ties: the smaller weights (the simpler rule), by the grid's order
    return max(sorted(scores), key=lambda p: (round(objective(scores[p], keys), 9), -p[0], -p[1]))


def cross_validate(scores: Scores) -> tuple[dict[tuple[str, str], tuple[float, float]], list[Point]]:
    keys = sorted(next(iter(scores.values())))
    rng = random.Random(0)
    fold: dict[tuple[str, str], int] = {}
    for s in sorted({k[0] for k in keys}):
        members = [k for k in keys if k[0] == s]
        rng.shuffle(members)
        fold.update({k: i % FOLDS for i, k in enumerate(members)})
    held: dict[tuple[str, str], tuple[float, float]] = {}
    chosen: list[Point] = []
    for f in range(FOLDS):
        point = best_point(scores, [k for k in keys if fold[k] != f])
        chosen.append(point)
        held.update({k: scores[point][k] for k in keys if fold[k] == f})
    return held, chosen


def show(title: str, tab: dict[str, Any]) -> None:
    print(title)
    for s, by_group in sorted(tab.items()):
        cells = [f"{g} ({by_group[g]['n']}) {by_group[g]['R@5']:.2f} / {by_group[g]['MRR@10']:.2f}"
                 for g in GROUPS if g in by_group]  # fmt: skip
        print(f"  {s:10} " + "   ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store-dir", type=Path, default=None, help="keep the stores here (ingest is incremental)")
    parser.add_argument("--data", type=Path, default=REPO / "data")
    parser.add_argument("--sets", default=None, help="comma-separated subset of seeds-dev,data,gimp-ko,pydoc-en")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    store_dir = args.store_dir or Path(tempfile.mkdtemp(prefix="saem-fusion-cv-"))
    sets = {s.strip() for s in args.sets.split(",")} if args.sets else None
    scores, groups = measure(store_dir, args.data, sets)
    if not scores:
        print("no QA set found (see bench/qa.py)", file=sys.stderr)
        return 2
    keys = sorted(groups)
    held, chosen = cross_validate(scores)
    fitted = best_point(scores, keys)
    default = (2.0, 0.5)
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "grid": {"lexical_weight": LEXICAL, "cross_lingual_lexical_weight": CROSS},
        "chosen_per_fold": chosen,
        "held_out": table(held, groups),
        "in_sample_best": {"point": fitted, "table": table(scores[fitted], groups)},
        "default": {"point": default, "table": table(scores[default], groups)} if default in scores else None,
        "leave_one_set_out": {},
    }
    show(f"5-fold CV, held-out folds (points chosen per fold: {chosen})", results["held_out"])
    show(f"in-sample best {fitted} (fitted to every question: optimistic)", results["in_sample_best"]["table"])
    for s in sorted({k[0] for k in keys}):
        point = best_point(scores, [k for k in keys if k[0] != s])
        tab = table({k: v for k, v in scores[point].items() if k[0] == s}, groups)
        results["leave_one_set_out"][s] = {"point": point, "table": tab}
        show(f"leave {s} out: {point} chosen on the others", tab)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
