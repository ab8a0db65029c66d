"""JSON written the way Go's `encoding/json` writes it: compact, UTF-8, HTML-escaped.

Upstream's status responses (§2.7), webhook payloads (§9.3), scaler requests (§6.5), routes
file saves (§7.5) and API answers (§8) all come from `json.Marshal`; byte-exact output lets
receivers and tests written against upstream keep working.
"""

from __future__ import annotations

import json
from typing import Final

# Go escapes these for HTML safety. They can only occur inside JSON string literals, so a
# plain translation of the whole text is exact.
_GO_ESCAPES: Final = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)
# Lone surrogates (undecodable bytes smuggled through surrogateescape) cannot be encoded;
# Go writes U+FFFD for invalid UTF-8.
_SURROGATES: Final = str.maketrans({code: "\ufffd" for code in range(0xD800, 0xE000)})


def replace_surrogates(text: str) -> str:
    """Lone surrogates become U+FFFD, as Go does for invalid UTF-8."""
    return text.translate(_SURROGATES)


def go_json(value: object, *, sort_keys: bool = False) -> str:
    """Compact JSON text, escaped as Go's json.Marshal escapes it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    return replace_surrogates(text.translate(_GO_ESCAPES))


def go_json_bytes(value: object, *, sort_keys: bool = False) -> bytes:
    """`go_json` encoded as UTF-8 (what goes on the wire or into a file)."""
    return go_json(value, sort_keys=sort_keys).encode("utf-8")
