"""Celery tasks of the accounts app: thin wrappers that call one service."""

from __future__ import annotations

from celery import shared_task

from accounts.services import password_reset_mail_send


@shared_task(acks_late=True)
def password_reset_mail_task(*, email: str, domain: str, use_https: bool) -> None:
    """Mail the reset link (if an account has the address) outside the request that asked."""
    password_reset_mail_send(email=email, domain=domain, use_https=use_https)
