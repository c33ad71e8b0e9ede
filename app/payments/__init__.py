"""Payments: intents priced by their payment type, verification with the gateway, refunds through it, and
the Python facade."""
