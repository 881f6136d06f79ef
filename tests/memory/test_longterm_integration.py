"""Long-term memory with the real packaged embedder (USE-m) and a real SQLite file: the same fact
said twice is stored once, a changed detail updates its own row and no other, in both languages."""

from __future__ import annotations

import pytest

from saem.memory import LongTermMemory, MemoryDB
from saem.models.embedders import load_embedder
from saem.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ltm(tmp_path_factory: pytest.TempPathFactory) -> LongTermMemory:
    db = MemoryDB.open(tmp_path_factory.mktemp("ltm") / "saem.db")
    return LongTermMemory(db, load_embedder(Settings(embed_model="packaged:use-m")))


@pytest.mark.parametrize(
    ("user", "fact", "reworded", "paraphrase", "changed", "other"),
    [
        ("en", "My favourite colour is blue", "My favourite colour is blue.", "Blue is my favourite colour",
         "My favourite colour is dark blue", "I have a dog named Bori"),
        ("ko", "내가 제일 좋아하는 색은 파란색이다", "내가 제일 좋아하는 색은 파란색이다.",
         "제일 좋아하는 색은 파란색이에요", "내가 제일 좋아하는 색은 진한 파란색이다", "나는 보리라는 개를 키운다"),
    ],
)  # fmt: skip
def test_a_fact_said_twice_is_stored_once_and_a_change_updates_its_own_row(
    ltm: LongTermMemory, user: str, fact: str, reworded: str, paraphrase: str, changed: str, other: str
) -> None:
    first = ltm.add(user, fact, source_session="s1", source_turn=1)
    dog = ltm.add(user, other, source_session="s1", source_turn=2)
    assert first.action == "ADD" and dog.action == "ADD"
    assert first.memory is not None and dog.memory is not None
    again = ltm.add(user, reworded, source_session="s2", source_turn=1)
    assert again.action == "NOOP", again.reason
    assert sorted(m.text for m in ltm.memories(user)) == sorted([fact, other])
    said_again = ltm.add(user, paraphrase)  # NOOP, or UPDATE to the newer wording: never a second row
    assert said_again.action in ("NOOP", "UPDATE"), said_again.reason
    assert said_again.memory is not None and said_again.memory.id == first.memory.id
    assert len(ltm.memories(user)) == 2
    update = ltm.add(user, changed, source_session="s3", source_turn=5)
    assert update.action == "UPDATE", update.reason
    assert update.memory is not None and update.memory.id == first.memory.id
    rows = {m.id: m for m in ltm.memories(user)}
    changed_row = rows[first.memory.id]
    assert changed_row.text == changed and (changed_row.source_session, changed_row.source_turn) == ("s3", 5)
    assert rows[dog.memory.id].text == other  # the other fact is untouched
    assert len(rows) == 2
    recalled = ltm.recall(user, changed, k=1)
    assert [m.id for m in recalled] == [first.memory.id]
