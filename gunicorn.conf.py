"""gunicorn settings shared by `make run`, the Dockerfile, docker-compose and `make bench`."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads let one worker keep scoring while another request of the same worker waits on the
# database commit (the audit row is durable before the answer leaves).
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Each connection holds one of those threads from its first byte to its last: a client that
# sends its headers or body slowly would hold it for as long as it likes, and a few dozen such
# clients would hold them all. So gunicorn runs behind nginx (deploy/nginx/), which reads every
# request whole, with timeouts, before passing it on, and takes every answer at once.
#
# A worker that has not finished a request in `timeout` seconds is killed and replaced (the
# client gets a 502 from nginx, whose proxy_read_timeout is longer). Scoring a request of
# API_MAX_INSTANCES rows takes well under a second; batch files are scored by Celery, not here.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# Request size limits, matching nginx's large_client_header_buffers (8 KB per line): a request
# line (method, path and query) up to 8190 bytes, at most 100 header fields of up to 8190 bytes
# each; over a limit is a 400 before any Django code runs.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# Each worker proves it is alive by touching a file on every turn of its loop, about twice per
# request. On a disk-backed filesystem that is an inode update for the journal each time; on
# tmpfs it is a memory write. gunicorn's FAQ points to /dev/shm for containers, whose /tmp is
# often on the image's overlay filesystem.
# (gunicorn makes the file with mkstemp and unlinks it at once: a shared folder is safe.)
_SHM = "/dev/shm"  # noqa: S108
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or (
    _SHM if os.path.isdir(_SHM) else None
)
graceful_timeout = 20


def _flag(name: str, default: str) -> bool:
    raw = os.environ.get(name, default).strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SystemExit(f"floodsite: configuration error: {name} must be on or off, not {raw!r}")


# A keep-alive connection stays with the worker that accepted it. With one listening socket
# shared by all workers, whichever worker wakes first may take every connection a client pool
# opens at once (seen with 16 connections: all on one worker in about half the runs, which
# then served at half the throughput while the other idled). With SO_REUSEPORT each worker
# listens on a socket of its own and the kernel spreads new connections across them. The
# price: connections still waiting in a worker's queue when it exits are reset instead of
# going to a sibling, and a second server on the same port (same user) joins instead of
# failing to bind. Only for TCP: on a Unix socket each worker would remove the file the
# previous one bound and only the last worker would be reachable (see on_starting).
# README: GUNICORN_REUSE_PORT.
reuse_port = _flag("GUNICORN_REUSE_PORT", "on")
# Seconds an idle keep-alive connection stays open; nginx's upstream keepalive_timeout (4 s) is
# shorter, so nginx never sends a request on a connection gunicorn is closing. An idle
# connection waits in the worker's poller, not in a thread.
keepalive = 5
# floodsite logs one structured line per request itself (floodsite.middleware); gunicorn's
# access log would repeat it without the request id.
accesslog = None
errorlog = "-"
# The control socket of gunicorn 27 is not used here.
control_socket_disable = True


# Prometheus multiprocess mode (floodsite/metrics.py): the workers write metrics as group
# "web"; a fresh start clears that group's old files on this host, and an exited worker's live
# gauges are dropped.
def on_starting(server):
    # The final addresses are known only here (--bind on the command line wins over this file).
    from gunicorn.util import parse_address

    # gunicorn's own parser: a (host, port) tuple for TCP, a path or a file descriptor else.
    if server.cfg.reuse_port and not all(
        isinstance(parse_address(address), tuple) for address in server.cfg.bind
    ):
        server.cfg.set("reuse_port", False)
        server.log.info("One shared listening socket: a socket per worker needs TCP addresses")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "floodsite.settings")
    # No secret key (a local run before `manage.py setup_site`): one line saying so, before
    # any worker starts, rather than a 500 on the first page that needs a session.
    from floodsite.local_state import secret_key_require

    secret_key_require()
    from floodsite import metrics

    metrics.process_group_start("web")


def child_exit(server, worker):
    from floodsite import metrics

    metrics.process_dead(worker.pid)
