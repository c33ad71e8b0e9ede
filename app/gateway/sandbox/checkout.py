"""HTML for the sandbox's checkout: the page Paystack's authorization_url would show."""

from __future__ import annotations

from html import escape

from app.gateway.sandbox.records import OPEN_CHARGE_STATUSES, Transaction, format_major

_STYLE = """
body { font-family: system-ui, sans-serif; background: #f4f6f8; margin: 0; }
main { max-width: 28rem; margin: 4rem auto; background: #fff; padding: 2rem; border-radius: .75rem;
       box-shadow: 0 2px 12px rgba(0, 0, 0, .08); }
.amount { font-size: 2rem; font-weight: 600; margin: .5rem 0 1.5rem; }
dt { color: #667; font-size: .85rem; } dd { margin: 0 0 .75rem; }
form { display: flex; gap: .5rem; flex-wrap: wrap; }
button { flex: 1; padding: .75rem; border: 0; border-radius: .5rem; font-size: 1rem; cursor: pointer; }
.success { background: #0ba360; color: #fff; } .failed { background: #d64545; color: #fff; }
.abandoned { background: #dde1e6; }
.note { color: #667; font-size: .85rem; margin-top: 1.5rem; }
"""

_OUTCOME_LABELS = {
    "success": "Pay (success)",
    "failed": "Decline (failed)",
    "abandoned": "Cancel (abandoned)",
}

_RESULT_TITLES = {
    "success": "Payment successful",
    "failed": "Payment failed",
    "abandoned": "Payment abandoned",
}


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} - Paystack sandbox</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>\n"
    )


def _summary(tx: Transaction) -> str:
    return (
        f'<p class="amount">{escape(tx.currency)} {format_major(tx.amount)}</p>'
        "<dl>"
        f"<dt>Email</dt><dd>{escape(tx.customer.email)}</dd>"
        f"<dt>Reference</dt><dd>{escape(tx.reference)}</dd>"
        f"<dt>Channels</dt><dd>{escape(', '.join(tx.channels))}</dd>"
        f"<dt>Status</dt><dd>{escape(tx.status)}</dd>"
        "</dl>"
    )


def checkout_page(tx: Transaction) -> str:
    if tx.status not in OPEN_CHARGE_STATUSES:
        return result_page(tx)
    # No form action: the browser posts back to this page's own URL.
    buttons = "".join(
        f'<button type="submit" name="outcome" value="{outcome}" class="{outcome}">{label}</button>'
        for outcome, label in _OUTCOME_LABELS.items()
    )
    body = (
        f'{_summary(tx)}<form method="post">{buttons}</form>'
        '<p class="note">Sandbox checkout: no money moves. Choose how this payment ends.</p>'
    )
    return _page("Sandbox checkout", body)


def result_page(tx: Transaction) -> str:
    return _page(_RESULT_TITLES.get(tx.status, "Payment"), _summary(tx))


def message_page(title: str, message: str) -> str:
    return _page(title, f"<p>{escape(message)}</p>")
