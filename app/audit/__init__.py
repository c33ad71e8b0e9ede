"""The audit trail's admin reading: `GET /v1/admin/audit-log` (rows are written by `app.models.audit.record`)."""
