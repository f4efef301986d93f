"""The gunicorn worker class: uvicorn on uvloop and httptools, without uvicorn's access log."""

from uvicorn_worker import UvicornWorker


class GatewayWorker(UvicornWorker):
    # The gateway writes its own structured access line; uvicorn's would double the log volume.
    CONFIG_KWARGS = {"loop": "uvloop", "http": "httptools", "access_log": False}
