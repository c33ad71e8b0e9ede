"""Built-in emulator of Paystack's API, used when PAYMENT_GATEWAY_MODE=sandbox."""

from app.gateway.sandbox.emulator import Sandbox
from app.gateway.sandbox.faults import SandboxFaults
from app.gateway.sandbox.router import MOUNT_PREFIX

__all__ = ["MOUNT_PREFIX", "Sandbox", "SandboxFaults"]
