"""Throttles of the password-reset form: requests per e-mail address and per client address."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.http import HttpRequest

from floodsite.rest import ScopedThrottle


class PasswordResetThrottle(ScopedThrottle):
    """Fixed-window count of reset requests for one e-mail address, or from one client.

    Counted alike whether or not an account has the address, so a refusal tells nothing
    about which addresses exist. Rates are read per request (THROTTLE_PASSWORD_RESET_*).
    """

    def __init__(self, *, email: str | None = None) -> None:
        super().__init__()
        self.email = email
        self.throttle_scope = "password_reset_address" if email else "password_reset_client"

    def check(self, request: HttpRequest) -> bool:
        """Count this request; False once the window's limit is used up."""
        return self.allow_request(request, self)

    def get_rate(self) -> str:
        if self.email:
            return settings.THROTTLE_PASSWORD_RESET_ADDRESS
        return settings.THROTTLE_PASSWORD_RESET_CLIENT

    def get_cache_key(self, request, view) -> str:
        if self.email:
            # Hashed: the cache holds no list of the addresses people typed.
            ident = hashlib.sha256(self.email.strip().casefold().encode()).hexdigest()
        else:
            ident = self.get_ident(request)  # even when signed in: the form is per client
        return self.cache_format % {"scope": self.throttle_scope, "ident": ident}
