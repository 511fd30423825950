"""A model of the core copied without pydantic's Python steps, compiled with the core (the lead
is copied once a message): a shallow copy, as ``model_copy()`` gives — its values, and the
names of the fields it was given; the core's models carry no extra and no private values."""

from __future__ import annotations

from typing import Any


def copied(model: Any) -> Any:
    cls: Any = type(model)
    new = cls.__new__(cls)
    object.__setattr__(new, "__dict__", model.__dict__.copy())
    object.__setattr__(new, "__pydantic_extra__", None)
    object.__setattr__(new, "__pydantic_fields_set__", set(model.__pydantic_fields_set__))
    object.__setattr__(new, "__pydantic_private__", None)
    return new
