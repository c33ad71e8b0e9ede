"""Field encryption at rest: Fernet with key rotation (the first key encrypts, all keys decrypt)."""

from __future__ import annotations

from cryptography.fernet import Fernet, MultiFernet

from app.core.config import Settings


class FieldCipher:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("ENCRYPTION_KEYS must hold at least one Fernet key")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> FieldCipher:
        return cls(settings.encryption_key_list)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()

    def rotate(self, token: str) -> str:
        """Re-encrypt under the current first key."""
        return self._fernet.rotate(token.encode()).decode()
