"""The OpenAPI 3.1 document of the gateway, served at ``{prefix}/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_ID = {
    "oneOf": [
        {"type": "string"},
        {"type": "integer", "minimum": -(1 << 127), "maximum": (1 << 127) - 1},
    ],
    "description": "A listener, group or message ID: a string or an integer (128 bits at most).",
}
_OUT_ID = {
    "type": ["string", "integer", "null"],
    "description": "An ID; an integer beyond 2**53 - 1 is written as its decimal string.",
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_AUTH = {"401": _problem("Missing or wrong bearer token (when the server has a token).")}
_BUSY = {"503": _problem("Too many requests at once (busy), or the dispatcher is stopping.")}
_BODY_BUSY = {
    "503": _problem(
        "Too many requests at once, or request bodies held at once would pass"
        " max_pending_body_bytes (busy), or the dispatcher is stopping."
    )
}
_BODY = {
    "400": _problem("The body is not JSON."),
    "408": _problem("The body did not arrive within body_timeout (code body_timeout)."),
    "413": _problem("The body is larger than max_body_size (code too_large)."),
    "415": _problem("The body is not application/json."),
    "422": _problem("The JSON is not a valid message; `field` names the offending field."),
}
_MESSAGE_REF = {"$ref": "#/components/schemas/Message"}


def openapi_document(prefix: str) -> dict[str, Any]:
    """The document, with ``servers`` set to ``prefix`` (relative to the listener URL)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dispatchio HTTP gateway",
            "version": "1",
            "description": (
                "Send messages to dispatchio listeners in any connected process, wait for"
                " their replies, and receive messages as a listener over Server-Sent Events."
                " Message IDs are written as strings (JavaScript numbers are exact only up"
                " to 2**53); they are accepted back as strings or integers."
            ),
        },
        "servers": [{"url": prefix or "/"}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "query": {"type": "apiKey", "in": "query", "name": "access_token"},
            },
            "schemas": {
                "NewMessage": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["type"],
                    "properties": {
                        "type": {"type": "string", "minLength": 1},
                        "content": {"description": "Any JSON value."},
                        "id": _ID,
                        "source": _ID,
                        "destination": _ID,
                        "group": _ID,
                        "response_required": {"type": "boolean"},
                        "blocking": {"type": "boolean"},
                    },
                    "description": "Set exactly one of destination and group.",
                },
                "Message": {
                    "type": "object",
                    "required": ["type", "id", "is_response"],
                    "properties": {
                        "type": {"type": "string"},
                        "content": {},
                        "id": {"type": "string"},
                        "source": _OUT_ID,
                        "destination": _OUT_ID,
                        "group": _OUT_ID,
                        "process": _OUT_ID,
                        "response_required": {"type": "boolean"},
                        "is_response": {"type": "boolean"},
                        "blocking": {"type": "boolean"},
                        "error": {"type": ["string", "null"]},
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {"id": {"type": "string"}},
                },
                "Reply": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "content": {"description": "Any JSON value: the reply's content."},
                        "listener": _ID,
                    },
                },
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "code"],
                    "properties": {
                        "type": {"type": "string", "description": "urn:dispatchio:problem:<code>"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "code": {"type": "string"},
                        "field": {"type": "string"},
                    },
                },
                "Directory": {
                    "type": "object",
                    "required": ["process", "processes"],
                    "properties": {
                        "process": _OUT_ID,
                        "processes": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "process": _OUT_ID,
                                    "local": {"type": "boolean"},
                                    "urls": {"type": "array", "items": {"type": "string"}},
                                    "listeners": {"type": "array", "items": _OUT_ID},
                                    "groups": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "group": _OUT_ID,
                                                "members": {"type": "array", "items": _OUT_ID},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
        "security": [{"bearer": []}, {"query": []}, {}],
        "paths": {
            "/v1/messages": {
                "post": {
                    "operationId": "sendMessage",
                    "summary": "Send a message: a letter, or with wait a request (or gather).",
                    "parameters": [
                        {
                            "name": "wait",
                            "in": "query",
                            "required": False,
                            "description": (
                                "Seconds to wait for the reply. To a destination: 200 with the"
                                " reply; to a group: 200 with every reply in time."
                            ),
                            "schema": {"type": "number", "exclusiveMinimum": 0},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/NewMessage"}
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            "The reply (to a destination) or the replies (to a group).",
                            {"oneOf": [_MESSAGE_REF, {"type": "array", "items": _MESSAGE_REF}]},
                        ),
                        "202": _json(
                            "Accepted as a letter.", {"$ref": "#/components/schemas/Accepted"}
                        ),
                        **_BODY,
                        "400": _problem("Not JSON, or wait is not a positive number."),
                        "404": _problem("Nobody can receive it (code undeliverable)."),
                        "409": _problem("This message id is already awaiting replies."),
                        **_AUTH,
                        "502": _problem("The handler raised (code handler_error)."),
                        "503": _problem(
                            "The receiving process was lost (peer_lost), its link is full"
                            " (outbox_full), or the gateway is busy (too many requests,"
                            " or request bodies held at once) or stopping."
                        ),
                        "504": _problem("No reply within wait seconds (code timeout)."),
                    },
                }
            },
            "/v1/messages/{id}/reply": {
                "post": {
                    "operationId": "replyToMessage",
                    "summary": "Answer a message delivered on an event stream.",
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                            "description": "The message's id as the stream gave it.",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Reply"}}
                        },
                    },
                    "responses": {
                        "204": {"description": "The reply was sent."},
                        **_BODY,
                        "404": _problem("No such message awaits a reply (unknown or answered)."),
                        "409": _problem("Several streams hold it: name the listener (ambiguous)."),
                        **_AUTH,
                        **_BODY_BUSY,
                    },
                }
            },
            "/v1/events": {
                "get": {
                    "operationId": "events",
                    "summary": "Be a listener (or group subscriber) while the stream is open.",
                    "description": (
                        "Server-Sent Events: first `event: ready`, then one `event: message`"
                        " per delivered message, `id:` the message id, `data:` the message."
                    ),
                    "parameters": [
                        {
                            "name": "listener",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1},
                        },
                        {
                            "name": "group",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "array",
                                "items": {"type": "string", "minLength": 1},
                            },
                            "style": "form",
                            "explode": True,
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The event stream.",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "400": _problem("Neither a listener nor a group, or an empty ID."),
                        "409": _problem("The listener ID is taken in the mesh (listener_taken)."),
                        "429": _problem("Too many open streams (max_streams)."),
                        **_AUTH,
                    },
                }
            },
            "/v1/directory": {
                "get": {
                    "operationId": "directory",
                    "summary": "Every process, listener and group the mesh knows.",
                    "responses": {
                        "200": _json("The directory.", {"$ref": "#/components/schemas/Directory"}),
                        **_AUTH,
                        **_BUSY,
                    },
                }
            },
            "/v1/status": {
                "get": {
                    "operationId": "status",
                    "summary": "What the status page shows: directory, counters, gateway state.",
                    "responses": {
                        "200": _json("The status.", {"type": "object"}),
                        **_AUTH,
                        **_BUSY,
                    },
                }
            },
            "/v1/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness; needs no token and reveals nothing else.",
                    "security": [{}],
                    "responses": {
                        "200": _json(
                            "Serving.",
                            {"type": "object", "properties": {"status": {"const": "ok"}}},
                        ),
                        "503": _json(
                            "Stopping.",
                            {"type": "object", "properties": {"status": {"type": "string"}}},
                        ),
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "responses": {
                        "200": _json("OpenAPI 3.1", {"type": "object"}),
                        **_AUTH,
                        **_BUSY,
                    },
                }
            },
        },
    }
