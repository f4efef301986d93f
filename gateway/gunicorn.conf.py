"""gunicorn settings for the gateway, derived from the validated gateway settings.

Run as: gunicorn -c gateway/gunicorn.conf.py "llmgw.app:create_app()"
Settings are validated here, in the master, so bad settings stop start-up with a clear
message before any worker forks.
"""

from llmgw.settings import load_settings

_settings = load_settings()

bind = [f"{_settings.gateway_host}:{_settings.gateway_port}"]
workers = _settings.gateway_workers
worker_class = "llmgw.worker.GatewayWorker"
# Long streams are normal; gunicorn's worker timeout is only a heartbeat check for uvicorn workers.
timeout = 60
graceful_timeout = 30
keepalive = 75  # above nginx's upstream keepalive_timeout so nginx closes idle connections first
accesslog = None
errorlog = "-"
loglevel = _settings.log_level
proc_name = "llmgw"
