"""Payouts: payout accounts registered at Paystack, and money owed to people sent as transfers."""
