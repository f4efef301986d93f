"""The gunicorn worker class: uvicorn on uvloop and httptools, draining without resetting clients."""

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
    # The gateway writes its own structured access line; uvicorn's would double the log volume.
    # No X-Forwarded-* rewriting: nothing in the gateway reads the client's address (limits
    # are per organisation and key), and the middleware costs every request.
    # The protocol is uvicorn's httptools one, bounded and writing a response's head and body
    # together; its limits come from the validated settings (with_client_limits, post_fork).
    CONFIG_KWARGS = {"loop": "uvloop", "access_log": False, "proxy_headers": False}

    def with_client_limits(self, limits: ClientLimits) -> None:
        self.config.http = functools.partial(GatewayHttpProtocol, limits=limits)

    async def _serve(self) -> None:
        """UvicornWorker._serve, with the draining server."""
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
