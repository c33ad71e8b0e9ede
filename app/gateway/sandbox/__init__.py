"""Built-in emulator of Paystack's API, used when PAYMENT_GATEWAY_MODE=sandbox."""

from app.gateway.sandbox.emulator import MOUNT_PREFIX, Sandbox
from app.gateway.sandbox.faults import SandboxFaults

__all__ = ["MOUNT_PREFIX", "Sandbox", "SandboxFaults"]
