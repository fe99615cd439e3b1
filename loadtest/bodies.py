"""OpenAI request bodies for a planned request (plus the vLLM extras the workload asks for)."""

from __future__ import annotations

from typing import Any

from loadtest.plan import PlannedRequest
from loadtest.workload import Workload

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


def request_body(planned: PlannedRequest, workload: Workload) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": planned.model,
        "max_tokens": planned.max_tokens,
        "temperature": planned.temperature,
        "top_p": planned.top_p,
        "stream": planned.stream,
    }
    if planned.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": planned.prompt}]
    else:
        body["prompt"] = planned.prompt
    if planned.stream:
        body["stream_options"] = {"include_usage": True}
    if workload.ignore_eos:
        body["ignore_eos"] = True
    if workload.speculation.body_field:
        body[workload.speculation.body_field] = planned.speculative
    return body


def request_path(planned: PlannedRequest) -> str:
    return PATHS[planned.endpoint]
