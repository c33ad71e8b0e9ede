"""Shares: holdings and the cap table, and share transfers between investors."""
