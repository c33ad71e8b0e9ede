"""Plumbing every layer may use: settings, database and unit of work, errors, money, security, rate limits,
request guards, logging, metrics, group commit, encryption."""
