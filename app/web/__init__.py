"""What the routers share above the domains: request dependencies (runtime, session, principal) and
Idempotency-Key replay."""
