"""Paged KV cache bookkeeping: which blocks each sequence owns, shared and cached."""

from workers.kv_cache.block_pool import BlockPool
from workers.kv_cache.manager import KVCacheManager

__all__ = ["BlockPool", "KVCacheManager"]
