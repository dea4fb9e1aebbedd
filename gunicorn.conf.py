"""gunicorn settings shared by `make run`, the Dockerfile, docker-compose and `make bench`."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads let one worker keep scoring while another request of the same worker waits on the
# database commit (the audit row is durable before the answer leaves).
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 20
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
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "floodsite.settings")
    from floodsite import metrics

    metrics.process_group_start("web")


def child_exit(server, worker):
    from floodsite import metrics

    metrics.process_dead(worker.pid)
