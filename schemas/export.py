"""Published schemas: a JSON Schema for every message on every topic, generated from the
pydantic models, and an AsyncAPI 3.0 document describing the topics, keys and messages.

``json_schemas()`` and ``asyncapi(prefix, partitions)`` return plain dicts; ``funnel schema``
writes them out. Nothing here is hand-written twice: change a model, and the schemas follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schemas.commands import SalesCommand
from schemas.costs import AdSpend
from schemas.events import InteractionEvent
from schemas.handoff import (LeadCooled, LeadCustomer, LeadMql, LeadSlaBreached, LeadSql,
                             LeadTransitioned)
from schemas.identity import IdentitySchema
from schemas.lead import LeadSnapshot

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
CLOUDEVENT_HEADERS = {
    "type": "object",
    "properties": {"content-type": {"type": "string", "const": "application/cloudevents+json",
                                    "description": "structured content mode; no ce_ headers"}},
}
DLQ_HEADERS = {
    "type": "object",
    "required": ["error", "error_detail", "source_topic", "source_partition", "source_offset"],
    "properties": {
        "error": {"type": "string", "description": "why: invalid_json, not_an_object, "
                  "invalid_event, invalid_command, too_large, limit_exceeded, empty, "
                  "invalid_spend, command_refused, link_refused, invalid_identity_message, "
                  "identity_loop, processing_error"},
        "error_detail": {"type": "string"},
        "source_topic": {"type": "string"},
        "source_partition": {"type": "string", "description": "a decimal number"},
        "source_offset": {"type": "string", "description": "a decimal number"},
    },
}
DEAD_LETTER = {
    "title": "DeadLetter",
    "description": "The original bytes of a message that could not be taken, unchanged "
                   "(they may not even be JSON); the reason is in the headers.",
}


@dataclass(frozen=True)
class Channel:
    name: str                      # topic name without the prefix
    key: str                       # what the key is
    messages: tuple[str, ...]      # message names (files / components)
    action: str                    # what Funnel does: receive or send
    description: str
    cloudevents: bool = False


MODELS: dict[str, tuple[type[BaseModel], str]] = {
    # message name -> (model, JSON Schema mode: validation for inputs, serialization for outputs)
    "InteractionEvent": (InteractionEvent, "validation"),
    "SalesCommand": (SalesCommand, "validation"),
    "LeadMql": (LeadMql, "serialization"),
    "LeadSql": (LeadSql, "serialization"),
    "LeadCustomer": (LeadCustomer, "serialization"),
    "LeadTransitioned": (LeadTransitioned, "serialization"),
    "LeadCooled": (LeadCooled, "serialization"),
    "LeadSlaBreached": (LeadSlaBreached, "serialization"),
    "LeadSnapshot": (LeadSnapshot, "serialization"),
    "AdSpend": (AdSpend, "serialization"),
    "IdentityMessage": (IdentitySchema, "validation"),
}
RAW: dict[str, dict[str, Any]] = {"DeadLetter": DEAD_LETTER}

CHANNELS = (
    Channel("events", "lead key: userId, else anonymousId", ("InteractionEvent",), "receive",
            "Interaction events (Segment Spec) from trackers, the call system, the collector."),
    Channel("sales-feedback", "lead_id", ("SalesCommand",), "receive",
            "Commands from the sales tool: create, accept, reject, disqualify, won, lost, reopen."),
    Channel("handoff.mql", "lead_id", ("LeadMql",), "send",
            "A lead became an MQL: for marketing automation.", cloudevents=True),
    Channel("handoff.sql", "lead_id", ("LeadSql",), "send",
            "A lead is handed to Sales: for the sales tool.", cloudevents=True),
    Channel("handoff.customer", "lead_id", ("LeadCustomer",), "send",
            "A lead became a customer: for re-marketing and finance.", cloudevents=True),
    Channel("transitions", "lead_id", ("LeadTransitioned", "LeadCooled"), "send",
            "Every stage change, and temperature drops of quiet leads.", cloudevents=True),
    Channel("alerts", "lead_id", ("LeadSlaBreached",), "send",
            "SQLs that Sales did not act on within the model's SLA.", cloudevents=True),
    Channel("leads", "lead_id", ("LeadSnapshot",), "send",
            "The latest snapshot of every lead (compacted)."),
    Channel("costs", "campaign", ("AdSpend",), "send",
            "Campaign spend reported by 'Ad Spend Reported' events, for cost per lead."),
    Channel("events.dlq", "the key as received", ("DeadLetter",), "send",
            "Messages that could not be taken, with the reason in the headers."),
    Channel("identity", "the lead the message is for", ("IdentityMessage",), "send",
            "Internal: identity links between partitions."),
)


def _with_rules(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Rules pydantic validators enforce that a JSON Schema can say too."""
    if isinstance(schema.get("discriminator"), dict):
        # pydantic writes OpenAPI's discriminator object; AsyncAPI's is the property name
        # (JSON Schema itself ignores the keyword: ``oneOf`` with ``const`` kinds decides)
        schema["discriminator"] = schema["discriminator"]["propertyName"]
    if name == "InteractionEvent":
        schema["anyOf"] = [{"required": ["userId"]}, {"required": ["anonymousId"]}]
        schema["allOf"] = [
            {"if": {"properties": {"type": {"const": "track"}}, "required": ["type"]},
             "then": {"required": ["event"]}},
            {"if": {"properties": {"type": {"const": "alias"}}, "required": ["type"]},
             "then": {"required": ["previousId"]}},
        ]
    return schema


def json_schemas() -> dict[str, dict[str, Any]]:
    """Message name -> a standalone JSON Schema (draft 2020-12)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (model, mode) in MODELS.items():
        schema = _with_rules(name, model.model_json_schema(mode=mode))  # type: ignore[arg-type]
        out[name] = {"$schema": JSON_SCHEMA_DIALECT, "$id": f"urn:funnel:schema:{name}", **schema}
    for name, schema in RAW.items():
        out[name] = {"$schema": JSON_SCHEMA_DIALECT, "$id": f"urn:funnel:schema:{name}", **schema}
    return out


def _component_schemas() -> dict[str, dict[str, Any]]:
    """Every schema once, with references between them under ``#/components/schemas``."""
    keyed = [((name, mode), model) for name, (model, mode) in MODELS.items()]
    top, defs = models_json_schema([(model, mode) for (_, mode), model in keyed],  # type: ignore
                                   ref_template="#/components/schemas/{model}")
    schemas = dict(defs.get("$defs", {}))
    for (name, mode), model in keyed:
        ref = top[(model, mode)]  # type: ignore[index]
        target = ref["$ref"].rsplit("/", 1)[1]
        schemas[name] = _with_rules(name, dict(schemas.pop(target) if target != name
                                               else schemas[name]))
    schemas.update({name: dict(schema) for name, schema in RAW.items()})
    return schemas


def asyncapi(prefix: str = "funnel.", partitions: int = 8, version: str = "0.1.0",
             server: str = "127.0.0.1:9092") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of Funnel's topics, keys and messages."""
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for ch in CHANNELS:
        cid = ch.name.replace(".", "_").replace("-", "_")
        for m in ch.messages:
            model = MODELS.get(m, (None,))[0]
            doc = (model.__doc__ or "").strip() if model is not None else RAW[m]["description"]
            message: dict[str, Any] = {
                "name": m, "title": m, "summary": doc.splitlines()[0] if doc else m,
                "contentType": "application/cloudevents+json" if ch.cloudevents
                else "application/json",
                "payload": {"$ref": f"#/components/schemas/{m}"},
                "bindings": {"kafka": {"key": {"type": "string", "description": ch.key},
                                       "bindingVersion": "0.5.0"}},
            }
            if ch.cloudevents:
                message["headers"] = CLOUDEVENT_HEADERS
            if m == "DeadLetter":
                message["headers"] = DLQ_HEADERS
                message["contentType"] = "application/octet-stream"
            messages[m] = message
        channels[cid] = {
            "address": f"{prefix}{ch.name}",
            "description": ch.description,
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in ch.messages},
            "bindings": {"kafka": {
                "topic": f"{prefix}{ch.name}", "partitions": partitions,
                **({"topicConfiguration": {"cleanup.policy": ["compact"]}}
                   if ch.name == "leads" else {}),
                "bindingVersion": "0.5.0"}},
        }
        verb = "consume" if ch.action == "receive" else "publish"
        operations[f"{verb}_{cid}"] = {
            "action": ch.action,
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": f"Funnel {'reads' if ch.action == 'receive' else 'writes'} "
                       f"{prefix}{ch.name}",
            "messages": [{"$ref": f"#/channels/{cid}/messages/{m}"} for m in ch.messages],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Funnel", "version": version,
                 "description": "Streaming lead scoring and lifecycle: Segment Spec events in, "
                                "CloudEvents handoffs and lead snapshots out. Keys and values "
                                "are UTF-8; values are JSON."},
        "defaultContentType": "application/json",
        "servers": {"kafka": {"host": server, "protocol": "kafka",
                              "description": "any Kafka cluster (FUNNEL_BROKER)"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": _component_schemas()},
    }
