"""Outbound events: an outbox every domain writes in its own transaction (`record.emit`), the platform's
webhook endpoints, the worker's signed deliveries to them, and the event lists for readers who poll."""
