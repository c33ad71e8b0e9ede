"""Escrow: investments held per app, milestones, releases with M-of-N approval, refunds of deposits,
disputes and chargebacks, statements."""
