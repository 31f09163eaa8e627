"""The one body reader for JSON, on the platform API and every adapter.

Refuses, with `InvalidInput` (each edge answers it in its protocol's own error form):
bodies over the size limit, malformed compressed bodies, bytes that are not UTF-8, JSON
nested deeper than `max_depth` (Python's parser would otherwise recurse until it fails),
objects with a repeated key (JSON leaves their meaning open; "last wins" hides mistakes
and attacks alike), and the non-standard constants NaN and Infinity.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.http_exceptions import HttpProcessingError

from gateway.errors import InvalidInput, PayloadTooLarge

MAX_DEPTH = 64
_RAW: web.RequestKey[bytes] = web.RequestKey("dergw_body_raw")  # the bytes read, kept
# A string (skipped whole, escapes included) or a bracket: only brackets change the depth.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


def json_depth(text: str, limit: int) -> int:
    """The deepest nesting of arrays and objects in `text`, counting stops past `limit`.

    Strings and everything but brackets are dropped, then the innermost pairs peeled off
    one level per pass: a few passes of the regex engine, not a Python step per string of
    the body. Brackets that do not pair up are counted one by one, as they come."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    depth = 0
    while brackets:
        inner = _INNERMOST.sub("", brackets)
        if inner == brackets:
            return _scan_depth(text, limit)
        depth += 1
        if depth > limit:
            return depth
        brackets = inner
    return depth


def _scan_depth(text: str, limit: int) -> int:
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        bracket = match.group()
        if bracket in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif bracket in "]}":
            depth -= 1
    return deepest


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise InvalidInput(f"the body repeats the key {key[:64]!r} in one object")
        found[key] = value
    return found


def _no_constants(name: str) -> Any:
    raise InvalidInput(f"the body uses {name}, which JSON does not allow")


def parse_json(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Bytes (UTF-8) or text to JSON values, under the rules in the module docstring."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise InvalidInput("the body is not UTF-8 text") from exc
    if json_depth(text, max_depth) > max_depth:
        raise InvalidInput(f"the body is nested deeper than {max_depth} levels")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys,
                          parse_constant=_no_constants)
    except ValueError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc


@dataclass(frozen=True, slots=True)
class BodyReader:
    """Reads request bodies for one listener; `max_bytes` is that listener's limit."""

    max_bytes: int = 1_048_576
    max_depth: int = MAX_DEPTH

    async def read_bytes(self, request: web.Request) -> bytes:
        """The (decompressed) body, or InvalidInput/PayloadTooLarge - never a 500. Read once
        per request: an access check and its handler may both read it."""
        cached = request.get(_RAW)
        if isinstance(cached, bytes):
            return cached
        raw = await self._read(request)
        request[_RAW] = raw
        return raw

    async def _read(self, request: web.BaseRequest) -> bytes:
        length = request.content_length
        if length is not None and length > self.max_bytes:
            raise PayloadTooLarge(f"the body is larger than {self.max_bytes} bytes")
        try:
            # StreamReader.read(n) returns what has arrived so far, not n bytes: read until
            # the end (or one byte past the limit), or a body sent in parts is cut short.
            parts: list[bytes] = []
            size = 0
            while size <= self.max_bytes:
                part = await request.content.read(self.max_bytes + 1 - size)
                if not part:
                    break
                parts.append(part)
                size += len(part)
            raw = b"".join(parts)
        except (HttpProcessingError, ClientPayloadError, ValueError) as exc:
            # aiohttp decompresses Content-Encoding itself; junk there surfaces here.
            raise InvalidInput("the body could not be read: malformed or compressed "
                               "wrongly for its Content-Encoding") from exc
        if len(raw) > self.max_bytes:
            raise PayloadTooLarge(f"the body is larger than {self.max_bytes} bytes")
        return raw

    async def read_json(self, request: web.Request) -> Any:
        return parse_json(await self.read_bytes(request), max_depth=self.max_depth)
