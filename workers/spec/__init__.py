"""Speculative decoding: proposers (draft model, remote draft, n-gram), lossless
verification, and the adaptive policy that decides how many tokens to draft."""
