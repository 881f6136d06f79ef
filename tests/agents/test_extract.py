"""extract(): validated objects, retries that show the error, StructuredOutputError with .raw."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import BaseModel, Field

from saem.agents.extract import extract
from saem.errors import StructuredOutputError
from saem.testing import ScriptedChatModel

pytestmark = pytest.mark.unit


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=150)


def test_valid_first_time_with_fences_and_prose() -> None:
    model = ScriptedChatModel(script=['Sure!\n```json\n{"name": "Minji", "age": 31}\n```'])
    person = extract(model, Person, text="Minji is 31 years old.")
    assert person == Person(name="Minji", age=31)
    system, human = model.prompts[0]
    assert '"age"' in str(system.content) and "not instructions" in str(system.content)
    assert str(human.content).startswith("<document>\nMinji is 31")


def test_retries_show_the_error_then_succeed() -> None:
    model = ScriptedChatModel(
        script=['{"name": "Minji"', '{"name": "Minji", "age": 999}', '{"name": "Minji", "age": 31}']
    )
    person = extract(model, Person, text="Minji is 31.", retries=2)
    assert person.age == 31
    second = model.prompts[1]
    assert isinstance(second[-2], AIMessage) and second[-2].content == '{"name": "Minji"'
    assert isinstance(second[-1], HumanMessage) and "not a JSON object" in str(second[-1].content)
    third = model.prompts[2]
    assert "age" in str(third[-1].content) and "150" in str(third[-1].content)


def test_retries_then_failure_carries_raw() -> None:
    model = ScriptedChatModel(script=["{broken", '{"name": 3}', '{"age": "old"}'])
    with pytest.raises(StructuredOutputError) as info:
        extract(model, Person, text="?", retries=2)
    assert info.value.raw == '{"age": "old"}'
    assert "3 attempts" in info.value.message
    assert len(model.prompts) == 3


def test_documents_input_and_argument_errors() -> None:
    model = ScriptedChatModel(script=['{"name": "Bori", "age": 3}'])
    docs = [Document("Bori is a 3 year old dog.", metadata={"source": "pets.md"})]
    assert extract(model, Person, documents=docs).name == "Bori"
    assert '<document source="pets.md">' in str(model.prompts[0][1].content)
    with pytest.raises(ValueError):
        extract(model, Person)
    with pytest.raises(ValueError):
        extract(model, Person, text="a", documents=docs)
    with pytest.raises(ValueError, match="empty"):
        extract(model, Person, documents=[])
