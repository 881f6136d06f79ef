"""Explicit memory commands in a chat message: "remember that …", "forget …", "기억해 줘 …".

    parse_command("Remember that my favourite colour is blue")
    # Command(action='remember', fact='my favourite colour is blue')
    parse_command("내 생일은 5월 3일이라는 걸 기억해 줘")   # Command('remember', '내 생일은 5월 3일이다')
    parse_command("What do you remember?")              # None: a question is never a command

Pure functions: no database, no model. ``LongTermMemory.apply_command`` carries commands out.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

__all__ = ["Command", "parse_command"]


class Command(NamedTuple):
    action: Literal["remember", "forget"]
    fact: str


_EN_REMEMBER = re.compile(r"^(?:please\s*,?\s+)?remember(?:\s+that\b|\s*[:,])\s*(?P<fact>.+)$", re.I | re.S)
_EN_FORGET = re.compile(r"^(?:please\s*,?\s+)?forget(?:\s+that\b|\s+about\b|\s*[:,]|\s)\s*(?P<fact>.+)$", re.I | re.S)
_NOT_A_FACT = {"it", "that", "this", "about", "everything", "그거", "그것", "이거"}
_KO_FIRST = re.compile(
    r"^\s*(?P<verb>기억|잊어)(?:해)?\s*(?:줘|주세요|둬|두세요|줄래|버려|버려줘)?\s*[:：,]\s*(?P<fact>.+)$"
    r"|^\s*(?P<verb2>기억해|잊어)\s*(?:줘|주세요|둬|두세요|버려)\s+(?P<fact2>.+)$",
    re.DOTALL,
)
_KO_LAST = re.compile(
    r"^\s*(?P<fact>.+?)\s*(?:(?P<obj>을|를|걸)\s*(?P<r>기억해)|(?:을|를|걸|은|는)?\s*(?P<f>잊어))"
    r"\s*(?:줘|주세요|둬|두세요|버려|버려줘|줄래)?\s*[.!~。]*\s*$",
    re.DOTALL,
)


def parse_command(text: str) -> Command | None:
    """An explicit memory command, or ``None``. Recognised (case-insensitive, at the start or,
    in Korean, at the end of the message): "remember that …", "remember: …", "please remember
    …:", "forget …", "forget that/about …", "기억해 줘 …", "기억해: …", "…을/를 기억해(줘)",
    "잊어 줘 …", "…을/를/은/는 잊어(줘/버려)". Questions ("…?") are not commands."""
    stripped = text.strip()
    if not stripped or stripped.endswith(("?", "？")):
        return None
    m = _EN_REMEMBER.match(stripped)
    if m:
        return _command("remember", m.group("fact"))
    m = _EN_FORGET.match(stripped)
    if m:
        return _command("forget", m.group("fact"))
    m = _KO_FIRST.match(stripped)
    if m:
        verb = m.group("verb") or m.group("verb2")
        return _command("remember" if verb.startswith("기억") else "forget", m.group("fact") or m.group("fact2"))
    m = _KO_LAST.match(stripped)
    if m:
        return _command("remember" if m.group("r") else "forget", m.group("fact"))
    return None


def _command(action: Literal["remember", "forget"], fact: str) -> Command | None:
    fact = fact.strip().strip("\"'“”‘’「」").strip()
    fact = re.sub(r"[.!。~\s]+$", "", fact)
    # "…라는 것/…다는 것" (that …) names the fact itself
    fact = re.sub(r"이라는\s*(?:것|거)?$", "이다", fact)
    fact = re.sub(r"라는\s*(?:것|거)?$", "다", fact)
    fact = re.sub(r"다는\s*(?:것|거)?$", "다", fact)
    return Command(action, fact) if fact and fact.lower() not in _NOT_A_FACT else None
