"""The payment service: the FastAPI application (`app.main`), its worker (`app.worker`) and the domains
between them; docs/architecture.md describes the layers."""
