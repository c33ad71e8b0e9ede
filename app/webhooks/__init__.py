"""The webhook inbox: Paystack events stored once on arrival, applied by the worker through the handlers
the wiring names."""
