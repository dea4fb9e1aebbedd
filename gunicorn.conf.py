"""gunicorn settings shared by `make run`, the Dockerfile, docker-compose and `make bench`."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads let one worker keep scoring while another request of the same worker waits on the
# database commit (the audit row is durable before the answer leaves).
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
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
    from floodsite import metrics

    metrics.process_group_start("web")


def child_exit(server, worker):
    from floodsite import metrics

    metrics.process_dead(worker.pid)
