"""How we read the OpenADR 3 specification files where they are ambiguous or contradict
themselves. Each patch is one documented decision (docs/openadr3.md, "Specification
ambiguities"); the patched copy is written to a temporary directory at test time and the
originals under ../shared are never copied into the repository.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

METHODS = ("get", "post", "put", "delete")
PROBLEM = {"$ref": "#/components/schemas/problem"}


def _problem_response(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": PROBLEM}}}


def require_bodies(spec: dict[str, Any]) -> None:
    """1. POST/PUT bodies are required (the VTN cannot create or replace from nothing)."""
    for item in spec["paths"].values():
        for method in ("post", "put"):
            body = item.get(method, {}).get("requestBody")
            if body is not None:
                body["required"] = True


def metadata_object_type(spec: dict[str, Any]) -> None:
    """2. 3.1.0 `ven`/`resource` responses: objectType is the object's type (VEN, RESOURCE),
    not the request discriminator (BL_VEN_REQUEST...), which allOf demanded at once."""
    schemas = spec["components"]["schemas"]
    for name, source in (("ven", "BlVenRequest"), ("resource", "BlResourceRequest")):
        if name not in schemas or source not in schemas:
            continue
        body = copy.deepcopy(schemas[source])
        body["properties"].pop("objectType", None)
        body["required"] = [r for r in body.get("required", []) if r != "objectType"]
        schemas[f"{source}Body"] = body
        schemas[name]["allOf"] = [
            {"$ref": "#/components/schemas/objectMetadata"},
            {"$ref": f"#/components/schemas/{source}Body"},
        ]


def auth_statuses(spec: dict[str, Any]) -> None:
    """3. Every secured operation may answer 401 (no or bad token) and 403 (scope), which
    several operations (all of 3.0.1) do not list."""
    for item in spec["paths"].values():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            secured = op.get("security", spec.get("security")) is not None
            if secured or "/auth/token" in str(op.get("operationId", "")):
                responses.setdefault("401", _problem_response("Unauthorized."))
                responses.setdefault("403", _problem_response("Forbidden."))
            if method in ("post", "put"):
                responses.setdefault("400", _problem_response("Bad Request."))
    token = spec["paths"].get("/auth/token", {}).get("post")
    if token is not None:
        token["responses"].setdefault("401", _problem_response("Invalid client."))
        # 14. Throttling and lock-out (docs/openadr3.md): 429 with Retry-After.
        token["responses"].setdefault("429", _problem_response("Too Many Requests."))


def conflicts(spec: dict[str, Any]) -> None:
    """4. Creating or renaming onto a taken name (venName, resourceName) answers 409; 12. one
    taken by an object the caller may not see answers 404 (existence hiding)."""
    for path in ("/vens", "/resources", "/vens/{venID}/resources"):
        for method in ("post",):
            op = spec["paths"].get(path, {}).get(method)
            if op is not None:
                op["responses"].setdefault("409", _problem_response("Conflict."))
                op["responses"].setdefault("404", _problem_response("Not Found."))


def not_found(spec: dict[str, Any]) -> None:
    """5. GET /notifiers/mqtt/...: 404 when no broker is configured (and for another VEN's
    topics)."""
    for path, item in spec["paths"].items():
        if path.startswith("/notifiers/mqtt/"):
            item["get"]["responses"].setdefault("404", _problem_response("Not Found."))


def null_is_absent(spec: dict[str, Any]) -> None:
    """8. An explicit null for an optional property is taken as absent (the ElaadNL client
    sends them): every optional property of a schema accepts null."""
    for schema in spec["components"]["schemas"].values():
        _nullable_optionals(schema)


def _nullable_optionals(schema: Any) -> None:
    if not isinstance(schema, dict):
        return
    for part in schema.get("allOf", []) + schema.get("oneOf", []) + schema.get("anyOf", []):
        _nullable_optionals(part)
    if isinstance(schema.get("items"), dict):
        _nullable_optionals(schema["items"])
    required = set(schema.get("required", []))
    properties = schema.get("properties", {})
    for name, prop in list(properties.items()):
        _nullable_optionals(prop)
        if name in required or prop.get("nullable"):
            continue
        if "$ref" in prop:
            properties[name] = {"allOf": [{"$ref": prop["$ref"]}], "nullable": True}
        else:
            prop["nullable"] = True
            if "enum" in prop and None not in prop["enum"]:
                prop["enum"] = [*prop["enum"], None]  # (an enum must name null too)


def https_callbacks(spec: dict[str, Any]) -> None:
    """6. A callbackUrl is an https URL the outbound policy accepts (http only to loopback in
    development mode): URIs of other schemes are refused (400 with the reason)."""
    for schema in spec["components"]["schemas"].values():
        for prop in _walk_properties(schema):
            callback = prop.get("callbackUrl")
            if isinstance(callback, dict) and callback.get("type") == "string":
                callback["pattern"] = "^https://[a-z][a-z0-9-]{0,30}(\\.[a-z][a-z0-9-]{0,30})+/"


def _walk_properties(schema: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if not isinstance(schema, dict):
        return found
    if isinstance(schema.get("properties"), dict):
        found.append(schema["properties"])
        for prop in schema["properties"].values():
            found += _walk_properties(prop)
    if isinstance(schema.get("items"), dict):
        found += _walk_properties(schema["items"])
    for part in schema.get("allOf", []) + schema.get("oneOf", []) + schema.get("anyOf", []):
        found += _walk_properties(part)
    return found


PATCHES = (require_bodies, metadata_object_type, auth_statuses, conflicts, not_found,
           null_is_absent, https_callbacks)


def patched_spec(source: Path, target: Path, base_url: str) -> Path:
    spec = yaml.safe_load(source.read_text())
    for patch in PATCHES:
        patch(spec)
    spec["servers"] = [{"url": base_url}]
    target.write_text(yaml.safe_dump(spec, sort_keys=False))
    return target
