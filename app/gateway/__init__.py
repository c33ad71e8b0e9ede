"""The payment gateway: the Paystack client, its typed results and errors, webhook signatures, and the
sandbox that emulates Paystack."""
