"""Payments: intents priced by their payment type, verification with the gateway, refunds through it, and
the platform's Python interface (python_api.py)."""
