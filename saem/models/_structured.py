"""Parse and validate structured output; failures raise ``StructuredOutputError`` with the raw text.

One parser serves the three ``with_structured_output`` methods: the JSON comes from the message
text (``json_schema``, ``json_mode``) or from the first tool call (``function_calling``), and is
validated by the pydantic model when the schema is one. While streaming, it yields each partial
result that already validates, and checks the complete output strictly at the end.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from operator import itemgetter
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, BaseMessageChunk
from langchain_core.output_parsers.transform import BaseCumulativeTransformOutputParser
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_core.utils.json import parse_partial_json
from pydantic import BaseModel, ValidationError
from pydantic.v1 import BaseModel as BaseModelV1
from pydantic.v1 import ValidationError as ValidationErrorV1

from saem.errors import StructuredOutputError

__all__ = ["StructuredOutputParser", "is_pydantic_class", "parser_for", "with_parser"]


def is_pydantic_class(schema: Any) -> bool:
    return isinstance(schema, type) and issubclass(schema, BaseModel | BaseModelV1)


def parser_for(schema: Any, *, tool_name: str | None = None) -> StructuredOutputParser:
    """The parser of output that should match ``schema`` (a pydantic class, a JSON schema, a
    TypedDict, or None for any object): validated by the pydantic class when there is one, else
    checked for the schema's required keys. ``tool_name``: read that tool call's arguments."""
    json_schema: dict[str, Any] = convert_to_json_schema(schema) if schema is not None else {}
    return StructuredOutputParser(
        pydantic_class=schema if is_pydantic_class(schema) else None,
        required=list(json_schema.get("required", [])),
        tool_name=tool_name,
    )


def with_parser(
    llm: Runnable[LanguageModelInput, Any], parser: StructuredOutputParser, *, include_raw: bool
) -> Runnable[LanguageModelInput, Any]:
    """``llm | parser``, or with ``include_raw`` LangChain's ``{"raw", "parsed", "parsing_error"}``
    dict, where a parsing failure is caught into ``parsing_error`` (and ``parsed`` is None)."""
    if not include_raw:
        return llm | parser
    parser_assign = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    parser_none = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | parser_assign.with_fallbacks([parser_none], exception_key="parsing_error")


class StructuredOutputParser(BaseCumulativeTransformOutputParser[Any]):
    """JSON → dict or pydantic object. ``tool_name`` set: read the first tool call with that name."""

    pydantic_class: Any = None
    required: list[str] = []
    tool_name: str | None = None

    @property
    def _type(self) -> str:
        return "saem_structured_output"

    def _payload(self, message: BaseMessage | None, text: str) -> tuple[Any, str]:
        """(parsed JSON or None, raw text) for the message."""
        if self.tool_name is None:
            return None, text
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                if call["name"] == self.tool_name:
                    return call["args"], json.dumps(call["args"], ensure_ascii=False)
            for bad in message.invalid_tool_calls:
                return None, str(bad.get("args") or "")
        return None, text

    def parse_result(self, result: list[Generation], *, partial: bool = False) -> Any:
        generation = result[0]
        message = generation.message if isinstance(generation, ChatGeneration) else None
        obj, raw = self._payload(message, generation.text)
        if partial:
            if obj is None and self.tool_name is None:
                try:
                    obj = parse_partial_json(raw)
                except ValueError:
                    return None
            if not isinstance(obj, dict):
                return None
            if self.pydantic_class is None:
                return obj
            try:
                return _validate(self.pydantic_class, obj)
            except (ValidationError, ValidationErrorV1):
                return None
        return self.parse_strict(obj, raw)

    def parse_strict(self, obj: Any, raw: str) -> Any:
        if obj is None:
            try:
                obj = json.loads(raw)
            except ValueError as err:
                raise StructuredOutputError(
                    f"model output is not valid JSON: {err}",
                    raw=raw,
                    hint="raise max_tokens if the output was cut off, or use a larger model",
                ) from err
        if not isinstance(obj, dict):
            raise StructuredOutputError("model output is JSON but not an object", raw=raw)
        if self.pydantic_class is not None:
            try:
                return _validate(self.pydantic_class, obj)
            except (ValidationError, ValidationErrorV1) as err:
                raise StructuredOutputError(
                    f"model output does not match {self.pydantic_class.__name__}: {err}", raw=raw
                ) from err
        missing = [k for k in self.required if k not in obj]
        if missing:
            raise StructuredOutputError(f"model output lacks required keys {missing}", raw=raw)
        return obj

    def parse(self, text: str) -> Any:
        return self.parse_result([Generation(text=text)])

    # streaming: partial results as they validate, then a strict check of the whole output
    def _transform(self, input: Iterator[str | BaseMessage]) -> Iterator[Any]:
        seen: list[str | BaseMessage] = []

        def tee(chunks: Iterator[str | BaseMessage]) -> Iterator[str | BaseMessage]:
            for chunk in chunks:
                seen.append(chunk)
                yield chunk

        last = None
        for parsed in super()._transform(tee(input)):
            last = parsed
            yield parsed
        final = self._final(seen)
        if final != last:
            yield final

    async def _atransform(self, input: AsyncIterator[str | BaseMessage]) -> AsyncIterator[Any]:
        seen: list[str | BaseMessage] = []

        async def tee(chunks: AsyncIterator[str | BaseMessage]) -> AsyncIterator[str | BaseMessage]:
            async for chunk in chunks:
                seen.append(chunk)
                yield chunk

        last = None
        async for parsed in super()._atransform(tee(input)):
            last = parsed
            yield parsed
        final = self._final(seen)
        if final != last:
            yield final

    def _final(self, chunks: list[str | BaseMessage]) -> Any:
        if not chunks:
            raise StructuredOutputError("the model returned nothing", raw="")
        if all(isinstance(c, str) for c in chunks):
            return self.parse_result([Generation(text="".join(c for c in chunks if isinstance(c, str)))])
        total: Any = None
        for chunk in chunks:
            if isinstance(chunk, BaseMessageChunk):
                total = chunk if total is None else total + chunk
            elif isinstance(chunk, BaseMessage):
                total = chunk
        return self.parse_result([ChatGeneration(message=total)])


def _validate(cls: Any, obj: dict[str, Any]) -> Any:
    if issubclass(cls, BaseModel):
        return cls.model_validate(obj)
    return cls.parse_obj(obj)
