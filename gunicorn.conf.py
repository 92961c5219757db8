"""gunicorn settings, read automatically when gunicorn starts in this folder.

Binds to ``$HOST:$PORT`` (default 127.0.0.1:7007, Backstage's backend port), runs
``$WEB_CONCURRENCY`` workers (default 3) with a few threads each, and starts each
worker's background work (the scheduler) after the fork, never in the master.
"""

import os
import shutil
import sys
import tempfile

# Metrics are summed over the workers through files in this folder; it must be
# set before any worker imports prometheus_client, and is emptied at startup.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    os.path.join(tempfile.gettempdir(), f"frobs-metrics-{os.getpid()}"),
)

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '7007')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
graceful_timeout = 30
timeout = 60


def post_worker_init(worker):
    runtime = worker.wsgi.extensions.get("frobs")
    if runtime is not None:
        runtime.start()


# The service needs no runtime control socket; without this, newer gunicorns put
# one in $HOME, where two services on one machine would share it.
control_socket_disable = True


def on_starting(server):
    """Check the configuration once, in the master, before any worker starts.

    Each configuration problem is printed on its own line, or the database that
    cannot be reached on one, and gunicorn exits, instead of every worker failing
    to boot with a traceback.
    """
    metrics = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(metrics, ignore_errors=True)
    os.makedirs(metrics, exist_ok=True)

    from frobs.app import build_runtime
    from frobs.config import ConfigError, load_config
    from frobs.errors import DatabaseUnavailable

    try:
        build_runtime(load_config())
    except ConfigError as error:
        _refuse_to_start(str(error), metrics)
    except DatabaseUnavailable as error:
        _refuse_to_start(" ".join(str(error).split()), metrics)


def _refuse_to_start(problem: str, metrics: str) -> None:
    sys.stderr.write(f"frobs: {problem}\n")
    shutil.rmtree(metrics, ignore_errors=True)  # gunicorn's on_exit will not run
    sys.exit(1)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
