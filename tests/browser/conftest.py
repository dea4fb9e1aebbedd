"""Browser tests: Playwright driving Debian's Chromium against pytest-django's live server.

Chromium comes from the system package (`apt-get install chromium`; .ci/run does it), never
from `playwright install`. `make screenshots` runs these tests with FLOODSITE_SCREENSHOTS set,
and `shot()` then saves the main pages under docs/screenshots/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the tests' own ORM calls are
# ordinary synchronous code and safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("FLOODSITE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.environ.get("FLOODSITE_SCREENSHOTS")
PASSWORD = "flood-risk-1"


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does this)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 900}, locale="en-GB"
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def shot(page):
    """Save a screenshot of the current page as docs/screenshots/<name>.png when asked."""

    def save(name: str) -> None:
        if SCREENSHOTS:
            folder = Path(SCREENSHOTS)
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    return save


@pytest.fixture
def browser_user(transactional_db, django_user_model):
    """Ana, an analyst."""
    from accounts.roles import Role
    from accounts.services import user_set_role

    user = django_user_model.objects.create_user(
        username="ana", password=PASSWORD, email="ana@example.org", first_name="Ana"
    )
    return user_set_role(user=user, role=Role.ANALYST)


@pytest.fixture
def signed_in(page, browser_user):
    """A page whose browser has signed in through the login form, as a person would."""
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(browser_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
    return page
