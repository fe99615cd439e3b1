"""The engine's RemoteClient over a DraftServer handle: a plain blocking callable, which the
engine's RemoteProposer calls from its own worker thread (never the replica's event loop)."""

from __future__ import annotations

from ray.serve.handle import DeploymentHandle

from workers.spec.proposers import DraftQuery, Proposal


class DraftServerClient:
    def __init__(self, draft: DeploymentHandle, timeout_s: float) -> None:
        self._draft = draft
        self._timeout_s = timeout_s

    def __call__(self, queries: list[DraftQuery]) -> list[Proposal | None]:
        # Ray's handle is thread-safe; the RemoteProposer enforces its own deadline too
        return self._draft.propose.remote(queries).result(timeout_s=self._timeout_s)
