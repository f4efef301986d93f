"""The gunicorn worker class: uvicorn on uvloop, bounded httptools, draining without resets."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from .client_limits import ClientLimits
from .http_protocol import GatewayHttpProtocol
from .settings import load_settings

logger = logging.getLogger("uvicorn.error")


class DrainingServer(Server):
    """uvicorn's server with one change to its shutdown: keep-alive connections are not closed
    under the client.

    uvicorn's own shutdown closes idle connections at once and marks busy ones to close right
    after their response, without telling the client (a stream's headers went out before the
    drain began). Seen on loopback during a HUP reload: the client reused such a connection
    for its next POST a few ms after the last chunk, before uvloop had closed the socket; the
    worker exited with the request unread and the kernel answered with a reset (ReadError).
    Here connections stay open: a request on one is still served, with `Connection: close`
    (CloseWhenDraining), and idle ones end when the client closes them or at the keep-alive
    timeout, which is above nginx's, so nginx closes first. timeout_graceful_shutdown caps it.
    """

    async def shutdown(self, sockets=None) -> None:
        logger.info("Shutting down")
        for server in self.servers:
            server.close()  # no new connections: the reload's new workers take those
        for sock in sockets or []:
            sock.close()  # uvloop closed the fd already (EBADF is logged); this marks it closed
        try:
            await asyncio.wait_for(self._drained(), timeout=self.config.timeout_graceful_shutdown)
        except TimeoutError:
            logger.error("Cancel %s running task(s), graceful timeout exceeded",
                         len(self.server_state.tasks))
            for task in self.server_state.tasks:
                task.cancel(msg="graceful timeout exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _drained(self) -> None:
        state = self.server_state
        while (state.connections or state.tasks) and not self.force_exit:
            await asyncio.sleep(0.1)


class GatewayWorker(UvicornWorker):
    """uvicorn on uvloop, with the gateway's bounded, coalescing HTTP protocol and drain.

    All of it is set up here, not in a gunicorn hook, so the worker is the same however it is
    started (gunicorn.conf.py, or `gunicorn -k llmgw.worker.GatewayWorker`): before, a start
    without the hook served plain uvicorn with no client limits.
    """

    # The gateway writes its own structured access line; uvicorn's would double the log volume.
    # No X-Forwarded-* rewriting: nothing in the gateway reads the client's address (limits
    # are per organisation and key), and the middleware costs every request.
    CONFIG_KWARGS = {"loop": "uvloop", "access_log": False, "proxy_headers": False}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)  # builds self.config from gunicorn's settings
        limits = ClientLimits.from_settings(load_settings())
        self.config.http = functools.partial(GatewayHttpProtocol, limits=limits)
        # uvicorn's drain ends a little before gunicorn's kill (graceful_timeout), so the
        # worker closes what is left and exits cleanly instead of being killed.
        self.config.timeout_graceful_shutdown = max(1.0, self.cfg.graceful_timeout - 5)

    async def _serve(self) -> None:
        """UvicornWorker._serve, with the draining server."""
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
