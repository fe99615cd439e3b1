"""GET /metrics on the API port: every live Ray node's metrics export, its tandem: series."""

from __future__ import annotations

import asyncio
import logging
import urllib.request

import ray

from router.prometheus_text import tandem_series

logger = logging.getLogger(__name__)
SCRAPE_TIMEOUT_S = 2.0


async def cluster_tandem_metrics() -> str:
    nodes = await asyncio.to_thread(ray.nodes)
    urls = [
        f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
        for n in nodes
        if n.get("Alive") and n.get("MetricsExportPort")
    ]
    texts = await asyncio.gather(*(asyncio.to_thread(_fetch, url) for url in urls))
    return tandem_series(t for t in texts if t)


def _fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
            return response.read().decode()
    except OSError:  # a node going away; the others still answer
        logger.warning("could not read the metrics export at %s", url)
        return ""
