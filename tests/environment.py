"""pytest plugin (-p tests.environment): give the test session its own local state folder.

It must run before pytest-django imports the settings, which is why it is a plugin named in
pyproject.toml and not part of conftest.py: the SQLite test database file, the filesystem
broker and uploads then live in a temporary folder instead of the developer's var/. Once Django
is set up, the folders and the secret key are made there the way `manage.py setup_site` makes
them, so a clean clone needs no setup before `make test`, and the workers and servers the tests
start inherit the same folder.
"""

import os
import tempfile

import pytest

os.environ.setdefault("FLOODSITE_VAR_DIR", tempfile.mkdtemp(prefix="floodsite-tests-"))


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from floodsite.local_state import local_state_prepare

    local_state_prepare()
