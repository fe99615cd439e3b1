"""Attention over the paged KV cache: metadata shared by every backend, and the backends."""

from workers.attention.metadata import AttentionMetadata
from workers.attention.reference import ReferenceAttention

__all__ = ["AttentionMetadata", "ReferenceAttention"]
