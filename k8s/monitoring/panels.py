"""The dashboard's panels as data: a title, a unit and PromQL queries over the metrics the
Serve layer exports (router/metrics.py names, exported by Ray as `ray_tandem_*`) and Ray
Serve's own `ray_serve_*` metrics.

Queries may use the dashboard variables $model, $application and Grafana's $__rate_interval.
"""

from __future__ import annotations

from dataclasses import dataclass

RATE = "[$__rate_interval]"
M = 'model=~"$model"'
APP = 'application=~"$application"'
BASE_ADAPTER = "(base)"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str
    stack: bool = False


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def quantile(metric: str, q: float, by: str = "") -> str:
    """The q-quantile of a router histogram (`tandem:<metric>`), optionally per label `by`."""
    group = f"le, {by}" if by else "le"
    buckets = f"ray_tandem_{metric}_bucket{{{M}}}{RATE}"
    return f"histogram_quantile({q}, sum by ({group}) (rate({buckets})))"


def quantiles(metric: str) -> tuple[Query, ...]:
    return tuple(Query(quantile(metric, q), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99))


def per_adapter(expr: str) -> str:
    """Names the base model's series (adapter="") so legends read `(base)`."""
    return f'label_replace({expr}, "adapter", "{BASE_ADAPTER}", "adapter", "")'


def _rate(metric: str, selector: str = M) -> str:
    return f"sum(rate({metric}{{{selector}}}{RATE}))"


HTTP = "ray_serve_num_http_requests_total"
API_ROUTES = f'{APP}, route=~"/v1/.*"'

ROWS: tuple[Row, ...] = (
    Row("Latency", (
        Panel("Time to first token", "s", quantiles("time_to_first_token_seconds"),
              "Router: request arrival to the first output token."),
        Panel("Inter-token latency", "s", quantiles("inter_token_latency_seconds"),
              "Router: time between output tokens, per token."),
        Panel("End-to-end latency", "s", quantiles("e2e_request_latency_seconds"),
              "Router: request arrival to finish."),
    )),
    Row("Throughput and errors", (
        Panel("Tokens/s", "short", (
            Query(_rate("ray_tandem_generation_tokens_total"), "output tokens/s"),
            Query(_rate("ray_tandem_prompt_tokens_total"), "prompt tokens/s"),
        ), "Tokens of finished requests."),
        Panel("Requests/s", "reqps", (
            Query(_rate("ray_tandem_request_success_total"), "finished"),
            Query(f"{_rate('ray_tandem_request_rejected_total')} or vector(0)",
                  "rejected (429/503)"),
            Query(f"{_rate('ray_tandem_request_failure_total')} or vector(0)",
                  "failed mid-stream (error chunk)"),
        ), "Finished requests, those admission refused, and those failing after streaming began."),
        Panel("Error rate", "percentunit", (
            Query(
                f'(sum(rate({HTTP}{{{API_ROUTES}, status_code=~"4..|5.."}}{RATE})) or vector(0))'
                f" / sum(rate({HTTP}{{{API_ROUTES}}}{RATE}))",
                "HTTP 4xx/5xx share",
            ),
        ), "Share of /v1 requests answered with an error status (Ray Serve's HTTP proxy)."),
    )),
    Row("Load", (
        Panel("Requests running and waiting", "short", (
            Query(f"sum(ray_tandem_num_requests_running{{{M}}})", "router: running"),
            Query(f"sum(ray_tandem_num_requests_waiting{{{M}}})", "router: waiting"),
            Query(f"sum(ray_tandem_engine_num_requests_running{{{M}}})", "engines: running"),
            Query(f"sum(ray_tandem_engine_num_requests_waiting{{{M}}})", "engines: waiting"),
        ), "Dispatched and queued at the router; running and queued inside the engines."),
        Panel("KV cache usage", "percentunit", (
            Query(f"max(ray_tandem_kv_cache_usage_perc{{{M}}})", "fullest replica"),
            Query(f"avg(ray_tandem_kv_cache_usage_perc{{{M}}})", "mean of replicas"),
        ), "Share of KV cache blocks in use."),
        Panel("Prefix cache and preemptions", "short", (
            Query(f"avg(ray_tandem_prefix_cache_hit_rate{{{M}}})", "prefix cache hit rate"),
            Query(f"sum(ray_tandem_num_preemptions{{{M}}})", "preemptions so far"),
        ), "Prefix cache hit rate (0-1) and preemptions of all replicas."),
    )),
    Row("Adapters", (
        Panel("Requests/s per adapter", "reqps", (
            Query(per_adapter(
                f"sum by (adapter) (rate(ray_tandem_request_success_total{{{M}}}{RATE}))"
            ), "{{adapter}}"),
        ), "Finished requests per LoRA adapter; (base) is the base model.", stack=True),
        Panel("Latency per adapter (p95)", "s", (
            Query(per_adapter(quantile("e2e_request_latency_seconds", 0.95, "adapter")),
                  "e2e {{adapter}}"),
            Query(per_adapter(quantile("time_to_first_token_seconds", 0.95, "adapter")),
                  "TTFT {{adapter}}"),
        ), "95th percentile end-to-end latency and TTFT per adapter."),
        Panel("Adapter loads", "short", (
            Query(f"sum by (adapter) (ray_tandem_lora_loads_total{{{M}}})", "{{adapter}}"),
        ), "Runtime adapter loads (POST /v1/load_lora_adapter) since the router started."),
    )),
    Row("Speculative decoding", (
        Panel("Draft acceptance rate", "percentunit", (
            Query(
                f"{_rate('ray_tandem_spec_decode_num_accepted_tokens_total')}"
                f" / {_rate('ray_tandem_spec_decode_num_draft_tokens_total')}",
                "accepted / drafted",
            ),
        ), "Share of drafted tokens the target model accepted."),
        Panel("Drafted and accepted tokens/s", "short", (
            Query(_rate("ray_tandem_spec_decode_num_draft_tokens_total"), "drafted"),
            Query(_rate("ray_tandem_spec_decode_num_accepted_tokens_total"), "accepted"),
        ), "Speculative tokens per second."),
    )),
    Row("Replicas", (
        Panel("Healthy replicas", "short", (
            Query(f"sum by (deployment) (ray_serve_deployment_replica_healthy{{{APP}}})",
                  "{{deployment}}"),
        ), "Replicas passing Serve's health check, per deployment.", stack=True),
        Panel("HTTP requests/s by status", "reqps", (
            Query(f"sum by (status_code) (rate({HTTP}{{{APP}}}{RATE}))", "{{status_code}}"),
        ), "Every HTTP request through Serve's proxies."),
    )),
)  # fmt: skip
