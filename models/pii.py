"""Personal data at rest: encryption with rotatable keys and keyed hashes for lookups.

Phone numbers are stored encrypted (Fernet, one key per id so keys can rotate) and found by
HMAC-SHA256 under a key derived from PII_KEY; neither the number nor the key reaches a log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"edoor-pii-v1", info=purpose).derive(
        secret.encode("utf-8")
    )


@dataclass(frozen=True)
class PiiKey:
    """One PII key: its id (first 8 hex of a fingerprint), a Fernet cipher and an HMAC key."""

    key_id: str
    fernet: Fernet
    hmac_key: bytes

    @classmethod
    def from_secret(cls, secret: str) -> PiiKey:
        fingerprint = hashlib.sha256(_derive(secret, b"id")).hexdigest()[:8]
        fernet = Fernet(base64.urlsafe_b64encode(_derive(secret, b"encrypt")))
        return cls(key_id=fingerprint, fernet=fernet, hmac_key=_derive(secret, b"lookup"))


class PiiVault:
    """Encrypts, decrypts and hashes personal data; older keys still decrypt during rotation."""

    def __init__(self, current: str, *, previous: list[str] | None = None) -> None:
        self.current = PiiKey.from_secret(current)
        self._previous = [PiiKey.from_secret(s) for s in previous or []]
        self._all = MultiFernet([self.current.fernet, *(k.fernet for k in self._previous)])

    def encrypt(self, value: str) -> str:
        token = self.current.fernet.encrypt(value.encode("utf-8")).decode("ascii")
        return f"{self.current.key_id}:{token}"

    def decrypt(self, sealed: str) -> str:
        _, _, token = sealed.partition(":")
        try:
            return self._all.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken as exc:  # message without the value, by design
            raise ValueError(
                "personal data could not be decrypted with any configured key"
            ) from exc

    def lookup_hash(self, value: str) -> str:
        """Keyed hash for equality lookups and uniqueness (the value itself is never stored)."""
        return hmac.new(self.current.hmac_key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def encrypt_bytes(self, value: bytes) -> bytes:
        return self.current.fernet.encrypt(value)

    def decrypt_bytes(self, sealed: bytes) -> bytes:
        try:
            return self._all.decrypt(sealed)
        except InvalidToken as exc:
            raise ValueError("data could not be decrypted with any configured key") from exc
