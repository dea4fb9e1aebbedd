"""With the cache (Redis) down the API keeps answering and says so once per interval."""

from __future__ import annotations

import logging

from floodsite import rest
from floodsite.tests.servers import free_port


def test_a_redis_outage_is_logged_once_per_interval_not_per_request(
    settings, api, typical_inputs, caplog, monkeypatch
):
    closed = free_port()  # nothing listens here: every cache call is refused at once
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed}/0",
        }
    }
    monkeypatch.setattr(rest, "THROTTLE_OUTAGE_LOG", rest.OncePerInterval(seconds=60))
    caplog.set_level(logging.WARNING)

    statuses = [
        api.post("/api/v1/predictions/", {"inputs": typical_inputs}, format="json").status_code
        for _ in range(40)
    ] + [api.get("/api/v1/predictions/").status_code for _ in range(40)]

    assert statuses == [201] * 40 + [200] * 40, "throttles stay open while the cache is down"
    lines = [r.msg for r in caplog.records if r.levelno >= logging.WARNING]
    assert [line["event"] for line in lines] == ["throttle_cache_unavailable"], lines
    assert "Connection refused" in lines[0]["error"] or "connect" in lines[0]["error"].lower()


def test_the_next_interval_logs_again_with_what_it_held_back():
    clock = [1000.0]
    log = rest.OncePerInterval(seconds=60, clock=lambda: clock[0])
    assert log.due() == (True, 0)
    for _ in range(5):
        assert log.due() == (False, 0)
    clock[0] += 61
    assert log.due() == (True, 5)
