"""Models of the core made and copied without pydantic's Python steps, compiled with the core
(``funnel.accel``): a message's event, each scoring rule's reason, the lead's copy once a
message. Only for values that pydantic's validation gave, or would give — the callers say why
theirs are (tests compare each with pydantic's own)."""

from __future__ import annotations

from typing import Any


def made(model: Any, values: dict[str, Any], fields_set: set[str],
         extra: dict[str, Any] | None = None) -> Any:
    """An instance of the pydantic ``model`` holding ``values`` (every field, in the model's
    order), as its validation sets them: the names it was given, its extra fields (a model
    that allows them: a dict), no private values."""
    new = model.__new__(model)
    object.__setattr__(new, "__dict__", values)
    object.__setattr__(new, "__pydantic_fields_set__", fields_set)
    object.__setattr__(new, "__pydantic_extra__", extra)
    object.__setattr__(new, "__pydantic_private__", None)
    return new


def copied(model: Any) -> Any:
    """A shallow copy, as ``model_copy()`` gives (the core's models carry no extra and no
    private values)."""
    return made(type(model), model.__dict__.copy(), set(model.__pydantic_fields_set__))
