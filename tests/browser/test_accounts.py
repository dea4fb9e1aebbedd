"""Browser tests of the accounts pages: sign-in, lockout, API tokens, password change."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from accounts.models import ApiToken
from accounts.roles import Role
from accounts.services import user_set_role
from tests.browser.conftest import PASSWORD

# Each starts Chromium against a live server: seconds per test.
pytestmark = pytest.mark.slow


@pytest.fixture
def csp_violations(page):
    """Console errors about the Content-Security-Policy (inline scripts or styles)."""
    seen: list[str] = []
    page.on(
        "console",
        lambda msg: (
            seen.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    return seen


def sign_in(page, username: str, password: str):
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_response(re.compile(r"/accounts/login/")) as response:
        page.get_by_role("button", name="Sign in").click()
    return response.value


def test_sign_in_with_a_wrong_then_the_right_password(page, browser_user, shot, csp_violations):
    page.goto("/accounts/login/")
    expect(page.get_by_label("Username")).to_be_focused()
    shot("login")

    sign_in(page, browser_user.username, "not-my-password")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The username or password is wrong")
    expect(page.get_by_label("Password")).to_have_attribute("aria-describedby", "login-error")
    expect(page.get_by_label("Username")).to_have_value(browser_user.username)

    sign_in(page, browser_user.username, PASSWORD)
    page.wait_for_url("**/")
    expect(page.get_by_role("button", name=f"Sign out {browser_user.username}")).to_be_visible()
    assert csp_violations == []


def test_lockout_after_the_failure_limit(page, browser_user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    page.goto("/accounts/login/")
    for _ in range(2):
        assert sign_in(page, browser_user.username, "guess").status == 400
    response = sign_in(page, browser_user.username, "guess")
    assert response.status == 429
    expect(page.get_by_role("heading", name="Sign-in temporarily locked")).to_be_visible()

    # The right password does not get through the lock; the reset page does open.
    page.goto("/accounts/login/")
    assert sign_in(page, browser_user.username, PASSWORD).status == 429
    page.get_by_role("link", name="reset your password").click()
    expect(page.get_by_role("heading", name="Reset your password")).to_be_visible()


def test_create_copy_and_revoke_a_token(signed_in, browser_user, shot, csp_violations):
    page = signed_in
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API tokens").click()
    expect(page.get_by_text("You have no API tokens.")).to_be_visible()

    page.get_by_label("Name").fill("nightly batch")
    page.get_by_label("Expires in (days)").fill("30")
    page.get_by_role("button", name="Create token").click()

    page.wait_for_url("**/accounts/tokens/created/")
    secret_field = page.get_by_label("Your new token")
    secret = secret_field.input_value()
    token = ApiToken.objects.get(user=browser_user)
    assert secret.startswith(token.token_key)
    copy = page.get_by_role("button", name="Copy")
    expect(copy).to_be_visible()
    copy.click()
    expect(page.get_by_role("status")).to_have_text(
        re.compile("Copied to the clipboard|press Ctrl\\+C")
    )
    if "Copied" in page.get_by_role("status").inner_text():
        assert page.evaluate("navigator.clipboard.readText()") == secret

    # Reloading does not show the secret again.
    page.reload()
    page.wait_for_url("**/accounts/tokens/")
    expect(page.get_by_text("shown only once")).to_be_visible()
    assert secret not in page.content()
    row = page.get_by_role("row", name=re.compile("nightly batch"))
    expect(row).to_contain_text(token.token_key)
    expect(row).to_contain_text("never")
    shot("tokens")

    row.get_by_role("link", name="Revoke nightly batch").click()
    expect(page.get_by_role("heading", name="Revoke “nightly batch”?")).to_be_visible()
    page.get_by_role("button", name="Revoke token").click()
    page.wait_for_url("**/accounts/tokens/")
    expect(page.get_by_text("Revoked the token “nightly batch”")).to_be_visible()
    expect(page.get_by_text("You have no API tokens.")).to_be_visible()
    assert not ApiToken.objects.exists()
    assert csp_violations == []


def test_double_click_on_create_makes_one_token(signed_in, browser_user):
    page = signed_in
    page.goto("/accounts/tokens/")
    page.get_by_label("Name").fill("ci")
    page.get_by_role("button", name="Create token").dblclick()
    page.wait_for_load_state("networkidle")
    assert ApiToken.objects.filter(user=browser_user).count() == 1


def test_profile_and_password_change(signed_in, browser_user, shot):
    page = signed_in
    # The groups survive the database flush between browser tests (post_migrate re-creates
    # them), so roles work here as they do on a real site.
    user_set_role(user=browser_user, role=Role.ANALYST)
    page.get_by_role("link", name="Profile").click()
    expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
    expect(page.get_by_text(browser_user.username, exact=True)).to_be_visible()
    expect(page.get_by_text("Analyst", exact=True)).to_be_visible()
    page.get_by_label("Last name").fill("Costa")
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_text("Your profile is saved.")).to_be_visible()
    expect(page.get_by_label("Last name")).to_have_value("Costa")
    shot("profile")

    page.get_by_role("link", name="Change your password").click()
    page.get_by_label("Old password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("tide-gauge-2024")
    page.get_by_label("New password confirmation").fill("tide-gauge-2025")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text(re.compile("The two password fields didn.t match"))).to_be_visible()
    expect(page.get_by_label("New password confirmation")).to_have_attribute("aria-invalid", "true")

    page.get_by_label("Old password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("tide-gauge-2024")
    page.get_by_label("New password confirmation").fill("tide-gauge-2024")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()

    page.get_by_role("button", name=f"Sign out {browser_user.username}").click()
    page.wait_for_url("**/accounts/login/")
    sign_in(page, browser_user.username, "tide-gauge-2024")
    page.wait_for_url("**/")


def test_pages_fit_a_phone(signed_in):
    page = signed_in
    page.set_viewport_size({"width": 375, "height": 740})
    for path in ("/accounts/profile/", "/accounts/tokens/", "/accounts/password/change/"):
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px"
