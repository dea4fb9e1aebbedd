"""pytest plugin (-p tests.environment): give the test session its own local state folder.

It must run before pytest-django imports the settings, which is why it is a plugin named in
pyproject.toml and not part of conftest.py: the SQLite test database file, the filesystem
broker and uploads then live in a temporary folder instead of the developer's var/.
"""

import os
import tempfile

os.environ.setdefault("FLOODSITE_VAR_DIR", tempfile.mkdtemp(prefix="floodsite-tests-"))
