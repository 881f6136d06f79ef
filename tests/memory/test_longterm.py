"""LongTermMemory: the ADD/UPDATE/NOOP rule, LLM extraction, commands, recall, forget, isolation."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import select

from saem.errors import StructuredOutputError
from saem.memory import (
    LLMDecider,
    LongTermMemory,
    Memory,
    MemoryDB,
    Proposal,
    ThresholdDecider,
    parse_command,
)
from saem.store.chat import MemoryRow
from saem.testing import HashEmbeddings, ScriptedChatModel, tool_call

pytestmark = pytest.mark.unit

COLOUR = "My favourite colour is blue"
DOG = "I have a dog named Bori"


@pytest.fixture
def db(tmp_path: Path) -> MemoryDB:
    return MemoryDB.open(tmp_path / "saem.db")


@pytest.fixture
def ltm(db: MemoryDB) -> LongTermMemory:
    return LongTermMemory(db, HashEmbeddings(64))


def texts(ltm: LongTermMemory, user: str) -> list[str]:
    return [m.text for m in ltm.memories(user)]


def cand(id: int, text: str, score: float) -> Memory:
    return Memory(id, text, 0.0, 0.0, None, None, score=score)


# --- the deterministic rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "candidates", "expected"),
    [
        ("x", [], Proposal("ADD")),
        ("I live in Seoul", [cand(1, "I live in Seoul.", 0.97)], Proposal("NOOP", 1)),
        # near-identical but with a changed detail: never dropped as a duplicate
        ("My favourite colour is dark blue", [cand(1, "My favourite colour is blue", 0.98)], Proposal("UPDATE", 1)),
        ("User lives in Seoul", [cand(1, "The user lives in Seoul", 0.90)], Proposal("NOOP", 1)),
        ("My birthday is 6 June", [cand(1, "My birthday is 3 May", 0.88)], Proposal("UPDATE", 1)),
        ("My birthday is 6 June", [cand(1, "My birthday is 3 May", 0.79)], Proposal("ADD")),
        # two rows equally close: never guess which one to overwrite
        ("My bird is Nabi", [cand(1, "My cat is Nabi", 0.86), cand(2, "My dog is Nabi", 0.84)], Proposal("ADD")),
        ("My bird is Nabi", [cand(2, "My dog is Nabi", 0.80), cand(1, "My cat is Nabi", 0.86)], Proposal("UPDATE", 1)),
    ],
)
def test_threshold_rule(text: str, candidates: list[Memory], expected: Proposal) -> None:
    got = ThresholdDecider()(text, candidates)
    assert (got.action, got.target) == (expected.action, expected.target)
    assert got.reason


def test_same_fact_twice_is_stored_once(ltm: LongTermMemory) -> None:
    first = ltm.add("alice", "I live in Seoul", source_session="s1", source_turn=3)
    assert first.action == "ADD" and first.memory is not None
    assert (first.memory.source_session, first.memory.source_turn) == ("s1", 3)
    again = ltm.add("alice", "I live in Seoul")
    punct = ltm.add("alice", "  i live in seoul!  ")
    assert (again.action, punct.action) == ("NOOP", "NOOP")
    assert again.memory is not None and again.memory.id == first.memory.id
    assert texts(ltm, "alice") == ["I live in Seoul"]


def test_changed_fact_updates_that_row_and_no_other(db: MemoryDB) -> None:
    ltm = LongTermMemory(db, HashEmbeddings(64), decide=ThresholdDecider(update=0.7))
    dog = ltm.add("alice", DOG).memory
    colour = ltm.add("alice", COLOUR).memory
    assert dog is not None and colour is not None
    decision = ltm.add("alice", "My favourite colour is green", source_turn=9)
    assert decision.action == "UPDATE"
    assert decision.previous is not None and decision.previous.text == COLOUR
    assert decision.memory is not None and decision.memory.id == colour.id and decision.memory.source_turn == 9
    rows = {m.id: m for m in ltm.memories("alice")}
    assert rows[colour.id].text == "My favourite colour is green"
    assert rows[colour.id].created == colour.created and rows[colour.id].updated >= colour.updated
    assert rows[dog.id] == dog
    assert ltm.recall("alice", "favourite colour green", k=1)[0].id == colour.id  # the vector moved too


def test_a_decide_step_cannot_touch_rows_it_was_not_shown(db: MemoryDB) -> None:
    plain = LongTermMemory(db, HashEmbeddings(64))
    victim = plain.add("bob", COLOUR).memory
    assert victim is not None

    def rogue(text: str, candidates: Sequence[Memory]) -> Proposal:
        return Proposal("UPDATE", target=victim.id, text="pwned")

    def rogue_delete(text: str, candidates: Sequence[Memory]) -> Proposal:
        return Proposal("DELETE", target=victim.id)

    assert LongTermMemory(db, HashEmbeddings(64), decide=rogue).add("alice", COLOUR).action == "ADD"
    assert LongTermMemory(db, HashEmbeddings(64), decide=rogue_delete).add("alice", DOG).action == "NOOP"
    assert texts(plain, "bob") == [COLOUR]
    assert texts(plain, "alice") == ["pwned"]  # the proposal's text, added as a new row of alice's


def test_concurrent_adds_of_one_fact_store_it_once(ltm: LongTermMemory) -> None:
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        ltm.add("alice", "I am vegetarian")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert texts(ltm, "alice") == ["I am vegetarian"]


# --- recall, forget, isolation ---------------------------------------------------------------


def test_recall_ranks_by_cosine(ltm: LongTermMemory) -> None:
    for fact in (DOG, COLOUR, "I work as a nurse in Busan", "나는 서울에 산다"):
        ltm.add("alice", fact)
    hits = ltm.recall("alice", "what is my favourite colour", k=2)
    assert [h.text for h in hits][0] == COLOUR and len(hits) == 2
    assert hits[0].score is not None and hits[1].score is not None and hits[0].score > hits[1].score
    assert ltm.recall("alice", "서울에 산다", k=1)[0].text == "나는 서울에 산다"
    assert ltm.recall("alice", "colour", k=5, min_score=0.99) == []
    assert ltm.recall("nobody", "colour") == []


def test_forget_by_id_and_by_query(ltm: LongTermMemory) -> None:
    dog = ltm.add("alice", DOG).memory
    ltm.add("alice", COLOUR)
    assert dog is not None
    removed = ltm.forget("alice", id=dog.id)
    assert [m.text for m in removed] == [DOG]
    assert ltm.forget("alice", id=dog.id) == []
    assert ltm.forget("alice", query="something unrelated entirely") == []
    gone = ltm.forget("alice", query="my favourite colour is blue")
    assert [m.text for m in gone] == [COLOUR] and gone[0].score is not None and gone[0].score > 0.8
    assert ltm.memories("alice") == []
    with pytest.raises(ValueError, match="exactly one"):
        ltm.forget("alice")


def test_other_users_memories_are_invisible_and_undeletable(ltm: LongTermMemory) -> None:
    secret = ltm.add("alice", COLOUR).memory
    assert secret is not None
    assert ltm.memories("bob") == [] and ltm.recall("bob", COLOUR) == []
    assert ltm.forget("bob", id=secret.id) == []
    assert ltm.forget("bob", query=COLOUR, threshold=0.0) == []
    assert ltm.add("bob", COLOUR).action == "ADD"  # bob's own copy; alice's row is not a duplicate
    ltm.forget("bob", query=COLOUR)
    assert texts(ltm, "alice") == [COLOUR] and ltm.memories("bob") == []


class AsymmetricEmbeddings(HashEmbeddings):
    """Like e5: one text gets one vector as a query and another as a passage; records which."""

    def __init__(self) -> None:
        super().__init__(64)
        self.calls: list[tuple[str, str]] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += [("passage", t) for t in texts]
        return [self._embed(f"passage {t}") for t in texts]

    def embed_query(self, text: str) -> list[float]:
        self.calls.append(("query", text))
        return self._embed(f"query {text}")


def test_facts_are_embedded_as_passages_and_looked_up_as_queries(db: MemoryDB) -> None:
    emb = AsymmetricEmbeddings()
    ltm = LongTermMemory(db, emb)
    ltm.add("alice", COLOUR)
    assert emb.calls == [("passage", COLOUR)]  # stored, and compared with the other facts, as a passage
    emb.calls.clear()
    [hit] = ltm.recall("alice", "what is my favourite colour", k=1)
    assert hit.text == COLOUR and emb.calls == [("query", "what is my favourite colour")]
    emb.calls.clear()
    assert [m.text for m in ltm.forget("alice", query=COLOUR, threshold=0.5)] == [COLOUR]
    assert emb.calls == [("query", COLOUR)]


def test_rows_from_another_embedder_are_reembedded(db: MemoryDB) -> None:
    LongTermMemory(db, HashEmbeddings(64)).add("alice", COLOUR)
    smaller = LongTermMemory(db, HashEmbeddings(16))
    assert smaller.recall("alice", COLOUR, k=1)[0].score == pytest.approx(1.0, abs=1e-5)
    with db.read() as s:
        assert list(s.scalars(select(MemoryRow.embed_model))) == ["fake:hash-16"]


# --- the LLM step ----------------------------------------------------------------------------


def test_extract_facts_applies_a_structured_tool_call(ltm: LongTermMemory) -> None:
    colour = ltm.add("alice", COLOUR).memory
    dog = ltm.add("alice", DOG).memory
    assert colour is not None and dog is not None
    shown = ltm.recall("alice", "My favourite colour is green now. I gave Bori away.", k=8)
    colour_n = [m.id for m in shown].index(colour.id)
    dog_n = [m.id for m in shown].index(dog.id)
    model = ScriptedChatModel(
        script=[
            tool_call(
                "MemoryOps",
                {
                    "operations": [
                        {"action": "UPDATE", "text": "My favourite colour is green", "target": colour_n},
                        {"action": "DELETE", "text": "", "target": dog_n},
                        {"action": "ADD", "text": "I moved to Busan", "target": None},
                        {"action": "ADD", "text": "My favourite colour is green", "target": None},
                    ]
                },
            )
        ]
    )
    decisions = ltm.extract_facts(
        model, "alice", "My favourite colour is green now. I gave Bori away.", source_session="s9", source_turn=4
    )
    assert [d.action for d in decisions] == ["UPDATE", "DELETE", "ADD", "NOOP"]
    assert decisions[0].memory is not None and decisions[0].memory.id == colour.id
    assert decisions[1].previous is not None and decisions[1].previous.id == dog.id
    assert sorted(texts(ltm, "alice")) == ["I moved to Busan", "My favourite colour is green"]
    added = [m for m in ltm.memories("alice") if m.text == "I moved to Busan"][0]
    assert (added.source_session, added.source_turn) == ("s9", 4)
    prompt = model.prompts[0][-1].text
    assert f"{colour_n}. {COLOUR}" in prompt and "I gave Bori away" in prompt


def test_extract_facts_reads_json_text_and_rejects_unknown_targets(ltm: LongTermMemory) -> None:
    ltm.add("alice", DOG)
    reply = (
        '```json\n{"operations": [{"action": "UPDATE", "text": "나는 부산에 산다", "target": 7},'
        ' {"action": "DELETE", "text": "", "target": 5},'
        ' {"action": "NOOP", "text": "", "target": 0}]}\n```'
    )
    decisions = ltm.extract_facts(ScriptedChatModel(script=[reply]), "alice", "부산으로 이사했어")
    assert [d.action for d in decisions] == ["ADD", "NOOP", "NOOP"]
    assert "not among the candidates" in decisions[0].reason
    assert sorted(texts(ltm, "alice")) == sorted([DOG, "나는 부산에 산다"])


def test_extract_facts_with_nothing_to_remember(ltm: LongTermMemory) -> None:
    assert ltm.extract_facts(ScriptedChatModel(script=['{"operations": []}']), "alice", "hi!") == []


def test_malformed_model_output_raises_and_writes_nothing(ltm: LongTermMemory) -> None:
    with pytest.raises(StructuredOutputError) as info:
        ltm.extract_facts(ScriptedChatModel(script=['{"operations": [{"action": "ADD"']), "alice", "x")
    assert info.value.raw.startswith('{"operations"')
    with pytest.raises(StructuredOutputError):
        ltm.extract_facts(
            ScriptedChatModel(script=['{"operations": [{"action": "MAYBE", "text": "", "target": null}]}']),
            "alice",
            "x",
        )
    assert ltm.memories("alice") == []


def test_llm_decider_maps_numbers_to_candidate_rows(db: MemoryDB) -> None:
    base = LongTermMemory(db, HashEmbeddings(64))
    colour = base.add("alice", COLOUR).memory
    assert colour is not None
    model = ScriptedChatModel(
        script=[
            tool_call(
                "MemoryOps", {"operations": [{"action": "UPDATE", "text": "My favourite colour is red", "target": 0}]}
            ),
            '{"operations": [{"action": "UPDATE", "text": "I like jazz", "target": 3}]}',
        ]
    )
    ltm = LongTermMemory(db, HashEmbeddings(64), decide=LLMDecider(model))
    first = ltm.add("alice", "My favourite colour is red")
    assert first.action == "UPDATE" and first.memory is not None and first.memory.id == colour.id
    assert ltm.add("alice", "I like jazz").action == "ADD"  # number 3 was never shown
    assert sorted(texts(ltm, "alice")) == ["I like jazz", "My favourite colour is red"]


# --- explicit commands -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("remember that I am allergic to peanuts.", ("remember", "I am allergic to peanuts")),
        ("Remember: my son's name is Jun", ("remember", "my son's name is Jun")),
        ("Please remember that I prefer short answers!", ("remember", "I prefer short answers")),
        ("forget my old address", ("forget", "my old address")),
        ("Forget that I live in Seoul", ("forget", "I live in Seoul")),
        ("forget about the dog", ("forget", "the dog")),
        ("기억해 줘 나는 커피를 좋아해", ("remember", "나는 커피를 좋아해")),
        ("기억해줘: 내 생일은 5월 3일", ("remember", "내 생일은 5월 3일")),
        ("내 생일이 5월 3일이라는 것을 기억해", ("remember", "내 생일이 5월 3일이다")),
        ("내가 채식주의자라는 걸 기억해 줘", ("remember", "내가 채식주의자다")),
        ("나는 매운 음식을 못 먹는다는 것을 기억해 주세요.", ("remember", "나는 매운 음식을 못 먹는다")),
        ("내 강아지 이름을 기억해", ("remember", "내 강아지 이름")),
        ("잊어 줘 내 예전 주소", ("forget", "내 예전 주소")),
        ("내 예전 주소는 잊어 줘", ("forget", "내 예전 주소")),
        ("그 얘기를 잊어버려", ("forget", "그 얘기")),
        ("Do you remember that I live in Seoul?", None),
        ("remember when we met", None),
        ("내 생일을 기억해?", None),
        ("I can't remember that", None),
        ("remember that", None),
        ("forget it", None),
        ("forget that", None),
        ("", None),
    ],
)
def test_parse_command(text: str, expected: tuple[str, str] | None) -> None:
    got = parse_command(text)
    assert (tuple(got) if got else None) == expected


def test_apply_command(ltm: LongTermMemory) -> None:
    assert ltm.apply_command("alice", "what's the weather?") is None
    added = ltm.apply_command("alice", "remember that my favourite colour is blue", source_session="s1")
    assert added is not None and added[0].action == "ADD"
    assert added[0].memory is not None and added[0].memory.source_session == "s1"
    forgotten = ltm.apply_command("alice", "forget that my favourite colour is blue")
    assert forgotten is not None and [d.action for d in forgotten] == ["DELETE"]
    assert ltm.memories("alice") == []
    nothing = ltm.apply_command("alice", "잊어 줘: 내 주소")
    assert nothing is not None and nothing[0].action == "NOOP"
