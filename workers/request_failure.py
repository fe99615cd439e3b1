"""Failing one request without the step loop: what the engine records when a request's
own work raises or its logits are not finite, and the message its client gets."""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

NON_FINITE = (
    "the model produced NaN or infinite logits for this request; if it uses an adapter, the "
    "adapter's weights may be broken"
)


@dataclass(frozen=True)
class RequestFailure:
    """request_id failed; `message` is safe to show its client."""

    request_id: str
    message: str


def failure_from_exception(request_id: str, stage: str, error: BaseException) -> RequestFailure:
    """Log the traceback under the request id; the client gets the id, not the details."""
    logger.error("request %s failed while %s", request_id, stage, exc_info=error)
    return RequestFailure(
        request_id,
        f"request {request_id} failed in the engine while {stage}; the server log has the "
        "details under this id",
    )
