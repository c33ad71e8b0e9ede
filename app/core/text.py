"""The one rule for which characters text from outside may hold.

Control characters have no business in ids, names, addresses, cursors or token claims: PostgreSQL refuses
NUL in text (a 500 after the gateway was already called), lone surrogates are not UTF-8 at all, and the rest
corrupt logs, CSV exports and the receipts the gateway sends. Free text in a JSON body (a description, a
note) may still break lines and hold tabs.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls and UTF-16 surrogates (which only a lone surrogate can be in a str).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_BUT_LINE_BREAKS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def has_control_characters(text: str, *, line_breaks_allowed: bool = False) -> bool:
    """True if `text` holds a control character or a lone surrogate; with `line_breaks_allowed`, TAB, LF and
    CR pass (free text in JSON bodies)."""
    pattern = _CONTROL_BUT_LINE_BREAKS if line_breaks_allowed else _CONTROL
    return pattern.search(text) is not None
