"""Accounts: the custom User, roles, sign-in and API token pages."""
