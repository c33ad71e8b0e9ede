"""Standard Webhooks signatures: a `whsec_` secret per endpoint, and the `webhook-id`, `webhook-timestamp`
and `webhook-signature` headers (`v1,` + base64 of HMAC-SHA256 over `id.timestamp.body`), made with the
`standardwebhooks` package that receivers verify with."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks format: `whsec_` + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signed_headers(secret: str, message_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """The headers of one delivery attempt: the id (the event's, so receivers drop duplicates), the time
    (receivers refuse stale ones) and the signature over both and the body."""
    stamp = (now or datetime.now(UTC)).replace(microsecond=0)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, stamp, body),
        "content-type": "application/json",
    }
