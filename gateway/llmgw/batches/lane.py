"""The batch lane, in the gateway: who a runner's line runs as, and whether it may run now.

A runner presents BATCH_RUNNER_TOKEN, the line it runs and the digest of the key that created
its job; the line then runs as that key (its organisation's quotas, its model access) but on
the batch lane: its own concurrency (MAX_CONCURRENT_BATCH), billed once per line, and only
where a backend has room realtime does not need (`check_room`), refused at once otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from pydantic import SecretStr

from ..admin_token import matches
from ..backend_state import StateView
from ..errors import InvalidApiKey, NoSpareCapacity, PermissionDenied
from ..routing import Backend, Model
from ..tenancy.auth import Authenticator, Principal
from ..tenancy.records import Scope
from .item import BATCH_KEY_HEADER, BatchItem


class BatchLane:
    def __init__(self, auth: Authenticator, state: StateView, *, token: SecretStr | None,
                 share: float, eligible: Callable[[Backend], bool], most: int) -> None:
        self._auth, self._state, self._token = auth, state, token
        self._share, self._eligible, self._most = share, eligible, most

    async def principal(self, token: str | None, item_header: str, headers) -> Principal:
        """The job's key as a principal on the batch lane; 401 without the runner's token."""
        if not matches(token, self._token):
            raise InvalidApiKey()
        item = BatchItem.parse(item_header)
        key_digest = headers.get(BATCH_KEY_HEADER) or ""
        if item is None or len(key_digest) != 64:
            raise InvalidApiKey("Invalid batch line: malformed batch headers.")
        principal = await self._auth.authenticate_digest(key_digest)
        if principal.org_id != item.org_id:
            raise InvalidApiKey("Invalid batch line: the key is not the job's organisation's.")
        principal.require(Scope.BATCH)
        return dataclasses.replace(principal, batch=item)

    def check_room(self, model: Model) -> None:
        """NoSpareCapacity unless some sound backend of the model has nothing waiting and runs
        fewer than its share of max_num_seqs. The figures are the backend's own (from every
        gateway worker and replica) when fresh; this worker's count is a floor between scrapes.
        Without fresh figures (the view off or failing), only this worker's count is known."""
        if self._most <= 0:
            raise NoSpareCapacity(model.name)  # MAX_CONCURRENT_BATCH=0: batch work is off
        for backend in model.pool.backends:
            if self._eligible(backend) and self._has_room(backend):
                return
        raise NoSpareCapacity(model.name)

    def _has_room(self, backend: Backend) -> bool:
        room = self._share * backend.max_num_seqs
        state = self._state.fresh(backend.name)
        if state is None:
            return not self._state.enabled and backend.in_flight < room
        return not state.waiting and max(state.running or 0, backend.in_flight) < room


def require_batch_scope(principal: Principal, scope: Scope) -> None:
    """A batch line needs the batch scope (checked when it was let in), not the endpoint's:
    seeds 001/004 give batch work to keys that hold `batch` alone."""
    if principal.batch is None:
        principal.require(scope)
    elif Scope.BATCH not in principal.scopes:
        raise PermissionDenied("this API key lacks the 'batch' scope")
