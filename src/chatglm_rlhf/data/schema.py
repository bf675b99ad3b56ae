"""The data model shared by every stage.

A *dialogue sample* is what a model answers: a history of earlier turns plus the current user prompt,
with zero or more candidate responses. A *comparison* is one human (or simulated, or RM) judgement of
two responses to the same sample. Both serialise to plain JSON dicts (our JSONL format); the TRL and
HH-RLHF formats are converted in :mod:`chatglm_rlhf.data.formats`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant")
LABELS = ("a", "b", "tie")
CRITERIA = ("helpfulness", "harmlessness", "fluency")


class SchemaError(ValueError):
    """A record does not match the schema; the message says which field and why."""


@dataclass
class Turn:
    role: str  # "system" | "user" | "assistant"
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise SchemaError(f"turn role must be one of {ROLES}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise SchemaError(f"turn content must be a string, got {type(self.content).__name__}")


def _turns(value: Any, where: str) -> list[Turn]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SchemaError(f"{where} must be a list of turns")
    out = []
    for i, t in enumerate(value):
        if isinstance(t, Turn):
            out.append(t)
        elif isinstance(t, dict) and "role" in t and "content" in t:
            out.append(Turn(str(t["role"]), t["content"]))
        else:
            raise SchemaError(f"{where}[{i}] must be an object with 'role' and 'content'")
    return out


def _require_str(d: dict, key: str, allow_empty: bool = True) -> str:
    if key not in d:
        raise SchemaError(f"missing field {key!r}")
    v = d[key]
    if not isinstance(v, str):
        raise SchemaError(f"field {key!r} must be a string, got {type(v).__name__}")
    if not allow_empty and not v.strip():
        raise SchemaError(f"field {key!r} is empty")
    return v


@dataclass
class DialogueSample:
    """History + prompt (+ candidate responses). ``id`` is stable across stages."""

    id: str
    prompt: str
    history: list[Turn] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    category: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def messages(self, response: str | None = None) -> list[dict[str, str]]:
        """Chat messages (``role``/``content`` dicts) for the history, the prompt and optionally a response."""
        msgs = [{"role": t.role, "content": t.content} for t in self.history]
        msgs.append({"role": "user", "content": self.prompt})
        if response is not None:
            msgs.append({"role": "assistant", "content": response})
        return msgs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DialogueSample:
        if not isinstance(d, dict):
            raise SchemaError("record must be a JSON object")
        responses = d.get("responses", [])
        if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
            raise SchemaError("field 'responses' must be a list of strings")
        return cls(
            id=str(d.get("id", "")),
            prompt=_require_str(d, "prompt", allow_empty=False),
            history=_turns(d.get("history"), "history"),
            responses=list(responses),
            category=d.get("category"),
            meta=dict(d.get("meta") or {}),
        )


@dataclass
class Comparison:
    """One judgement of ``response_a`` vs ``response_b`` for the same history + prompt.

    ``label`` is "a", "b" or "tie". ``strength`` is optional: 1 = slightly better, 2 = much better (the
    annotation app's 5-point scale maps to tie / 1 / 2). ``scores`` optionally holds per-response,
    per-criterion scores, e.g. ``{"a": {"helpfulness": 4, ...}, "b": {...}}``.
    """

    sample_id: str
    prompt: str
    response_a: str
    response_b: str
    label: str
    history: list[Turn] = field(default_factory=list)
    strength: float | None = None
    scores: dict[str, dict[str, float]] | None = None
    annotator: str | None = None
    time: str | None = None
    category: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise SchemaError(f"label must be one of {LABELS}, got {self.label!r}")

    @property
    def chosen(self) -> str:
        if self.label == "tie":
            raise SchemaError("a tie has no chosen response")
        return self.response_a if self.label == "a" else self.response_b

    @property
    def rejected(self) -> str:
        if self.label == "tie":
            raise SchemaError("a tie has no rejected response")
        return self.response_b if self.label == "a" else self.response_a

    def sample(self) -> DialogueSample:
        return DialogueSample(
            id=self.sample_id,
            prompt=self.prompt,
            history=list(self.history),
            responses=[self.response_a, self.response_b],
            category=self.category,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Comparison:
        if not isinstance(d, dict):
            raise SchemaError("record must be a JSON object")
        label = d.get("label")
        if label not in LABELS:
            raise SchemaError(f"field 'label' must be one of {LABELS}, got {label!r}")
        strength = d.get("strength")
        if strength is not None and not isinstance(strength, (int, float)):
            raise SchemaError("field 'strength' must be a number or null")
        scores = d.get("scores")
        if scores is not None and not isinstance(scores, dict):
            raise SchemaError("field 'scores' must be an object or null")
        return cls(
            sample_id=str(d.get("sample_id", "")),
            prompt=_require_str(d, "prompt", allow_empty=False),
            response_a=_require_str(d, "response_a"),
            response_b=_require_str(d, "response_b"),
            label=label,
            history=_turns(d.get("history"), "history"),
            strength=strength,
            scores=scores,
            annotator=d.get("annotator"),
            time=d.get("time"),
            category=d.get("category"),
            meta=dict(d.get("meta") or {}),
        )
