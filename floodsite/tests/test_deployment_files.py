"""docker-compose.yml, the Dockerfile, .env.example and the README refer to things that exist.

No Docker engine runs here, so the compose file is checked by reading it against the project.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands
from django.urls import resolve

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_SOURCE = (ROOT / "floodsite" / "settings.py").read_text()
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "nginx.conf.template"
# Variables read by the images we run unchanged, not by floodsite's settings.
IMAGE_VARIABLES = {"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"}


def read_settings_variables() -> set[str]:
    pattern = r'(?:\bread\(\s*env\.\w+,|env\.\w+\(|\bflag\()\s*"([A-Z][A-Z0-9_]+)"'
    return set(re.findall(pattern, SETTINGS_SOURCE))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def env_example_variables() -> list[str]:
    names = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]+)=", line)
        if match:
            names.append(match.group(1))
    return names


def test_compose_has_the_services_with_healthchecks_and_volumes(compose):
    services = compose["services"]
    assert {"db", "redis", "web", "proxy", "worker", "beat"} <= set(services)
    for name in ("db", "redis", "web", "proxy", "worker"):
        assert "healthcheck" in services[name], name
    assert {"pgdata", "media"} <= set(compose["volumes"])
    assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]
    for name in ("web", "worker", "beat"):
        assert "media:/app/var/media" in services[name]["volumes"]
        assert services[name]["env_file"] == ".env"
        assert services[name]["build"]["dockerfile"] == "Dockerfile"
        assert (ROOT / services[name]["build"]["dockerfile"]).is_file()


def test_every_service_command_names_something_in_the_project(compose):
    commands = get_commands()
    for name, service in compose["services"].items():
        command = service.get("command")
        if "build" not in service or command is None:
            continue
        program = command[0]
        if program == "gunicorn":
            config = command[command.index("--config") + 1]
            assert (ROOT / config).is_file(), (name, config)
            module = command[-1]
            assert importlib.util.find_spec(module) is not None, (name, module)
            assert hasattr(importlib.import_module(module), "application")
        elif program == "celery":
            app_module = command[command.index("-A") + 1]
            assert hasattr(importlib.import_module(app_module), "celery_app"), name
            assert command[command.index("-A") + 2] in {"worker", "beat"}
        elif program == "python":
            assert command[1] == "manage.py"
            assert command[2] in commands, (name, command[2])
        else:
            pytest.fail(f"service {name} runs an unknown program {program!r}")


def test_compose_environment_names_are_read_by_settings(compose):
    known = read_settings_variables()
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            if name == "db":
                assert variable in IMAGE_VARIABLES
            elif name == "proxy":
                assert variable in nginx_placeholders(), f"the nginx template has no {variable}"
            else:
                assert variable in known, f"{name} sets {variable}, which settings never read"


def nginx_placeholders() -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)\}", NGINX_TEMPLATE.read_text()))


def test_nginx_is_the_only_way_in_and_fills_every_placeholder_of_the_shipped_config(compose):
    services = compose["services"]
    proxy, web = services["proxy"], services["web"]
    # Slow clients meet nginx, never gunicorn: web publishes nothing, nginx publishes its port.
    assert "ports" not in web
    assert proxy["ports"] == ["8000:8000"]
    assert proxy["depends_on"]["web"]["condition"] == "service_healthy"
    assert "healthcheck" in proxy
    assert str(web["environment"]["TRUSTED_PROXY_COUNT"]) == "1"
    for name in ("worker", "beat"):
        assert "TRUSTED_PROXY_COUNT" not in services[name]["environment"]
        assert services[name]["environment"]["DATABASE_URL"] == web["environment"]["DATABASE_URL"]
    # The proxy image is the Dockerfile's stage of that name, built from the shipped template.
    assert proxy["build"] == {"context": ".", "dockerfile": "Dockerfile", "target": "proxy"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", dockerfile, re.M)
    assert stages == ["app", "proxy"]
    assert services["web"]["build"]["target"] == "app"
    proxy_stage = dockerfile.split("AS proxy", 1)[1]
    assert f"COPY {NGINX_TEMPLATE.relative_to(ROOT)} " in proxy_stage
    assert "COPY --from=app /app/staticfiles " in proxy_stage
    # envsubst fills exactly the template's placeholders, each given in compose.
    placeholders = nginx_placeholders()
    assert placeholders == {"FLOODSITE_LISTEN", "FLOODSITE_UPSTREAM", "FLOODSITE_STATIC_ROOT"}
    listed = set(re.findall(r"\$\{(\w+)\}", proxy_stage.split("envsubst '", 1)[1].split("<")[0]))
    assert listed == placeholders == set(proxy["environment"])
    host, port = proxy["environment"]["FLOODSITE_UPSTREAM"].split(":")
    assert host == "web" and web["expose"] == [port]
    assert proxy["environment"]["FLOODSITE_STATIC_ROOT"] in proxy_stage


def test_nginx_takes_the_largest_upload_and_passes_the_client_address(settings):
    conf = NGINX_TEMPLATE.read_text()
    size = re.search(r"client_max_body_size (\d+)m;", conf)
    # A batch file at BATCH_MAX_BYTES (plus its multipart framing) reaches the app, whose 413
    # names the limit; nginx refuses only what is well past it.
    assert settings.BATCH_MAX_BYTES < int(size.group(1)) * 2**20 < 1.1 * settings.BATCH_MAX_BYTES
    for directive in (
        "client_header_timeout",
        "client_body_timeout",
        "send_timeout",
        "proxy_buffering on",
        "proxy_request_buffering on",
        "proxy_set_header Host $host",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for",
        "proxy_set_header X-Forwarded-Proto",
    ):
        assert directive in conf, directive


def test_healthcheck_paths_are_routed(compose):
    probe = " ".join(compose["services"]["web"]["healthcheck"]["test"])
    path = re.search(r"127\.0\.0\.1:8000(/\w+)", probe).group(1)
    assert resolve(path).url_name == "healthz"


def test_dockerfile_runs_as_non_root_and_collects_static():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert re.search(r"^USER floodsite", dockerfile, re.M)
    assert "collectstatic --noinput" in dockerfile
    assert "gunicorn" in dockerfile


def test_env_example_documents_every_setting_and_the_readme_table_lists_them():
    documented = set(env_example_variables())
    read = read_settings_variables() - {"DJANGO_SETTINGS_MODULE"}
    assert read <= documented, f"undocumented in .env.example: {sorted(read - documented)}"
    readme = (ROOT / "README.md").read_text()
    missing = sorted(v for v in documented - IMAGE_VARIABLES if f"`{v}`" not in readme)
    assert not missing, f"not in the README's settings table: {missing}"


def test_readme_opens_with_the_two_commands():
    head = (ROOT / "README.md").read_text().split("\n## ")[0]
    assert "make run" in head and "make test" in head
