"""The API's JSON parser: DRF's, refusing what PostgreSQL cannot store or Python cannot walk.

A NUL character (`\\u0000`) in any key or string reached the database and answered 500
("unsupported Unicode escape sequence"); a body nested thousands deep raised RecursionError.
Both are a 400 `malformed_request` now (issue 12, item 3). Ingest has its own parsers
(metering.api), which keep such events for the dead letter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as DrfJSONParser


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class JSONParser(DrfJSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
        if _has_nul(data):
            raise ParseError("JSON parse error - a key or string contains a NUL character.")
        return data
