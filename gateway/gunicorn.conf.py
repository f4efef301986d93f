"""gunicorn settings for the gateway, derived from the validated gateway settings.

Run as: gunicorn -c gateway/gunicorn.conf.py "llmgw.app:create_app()"
Settings are validated here, in the master, so bad settings stop start-up with a clear
message before any worker forks.
"""

import os
import shutil
import tempfile

from llmgw.settings import load_settings

_settings = load_settings()

# Metrics from every worker are summed at scrape time (prometheus-client multiprocess mode).
# The directory must exist, empty, before the workers import prometheus_client. A HUP reload
# runs this file again in the same master: the directory is emptied only at the first start,
# or the reload would wipe the live counters of the workers still draining.
_metrics_dir = (os.environ.get("PROMETHEUS_MULTIPROC_DIR")
                or tempfile.mkdtemp(prefix="llmgw-metrics-"))
if os.environ.get("LLMGW_METRICS_DIR_MASTER") != str(os.getpid()):
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir)
    os.environ["LLMGW_METRICS_DIR_MASTER"] = str(os.getpid())
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

bind = [f"{_settings.gateway_host}:{_settings.gateway_port}"]
workers = _settings.gateway_workers
worker_class = "llmgw.worker.GatewayWorker"
# Long streams are normal; gunicorn's worker timeout is only a heartbeat check for uvicorn workers.
timeout = 60
# On SIGTERM or a HUP reload, workers get this long to finish in-flight requests and streams
# before gunicorn kills them; uvicorn's own drain limit (llmgw.worker) ends a little earlier
# so the worker closes what is left and exits cleanly instead of being killed. While draining,
# a worker keeps its open connections (see llmgw.worker.DrainingServer) until the client
# closes them or they idle past `keepalive`.
graceful_timeout = int(_settings.graceful_timeout_secs)
keepalive = 75  # above nginx's upstream keepalive_timeout so nginx closes idle connections first
# gunicorn's control socket is one path per user (~/.gunicorn), shared by every gunicorn on
# the host, and it stops and restarts a thread around every worker fork; nothing here uses it.
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = _settings.log_level
proc_name = "llmgw"


def child_exit(_server, worker) -> None:
    """A dead worker's live gauges must not linger in the sums."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)
