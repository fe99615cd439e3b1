"""LoRA adapters: PEFT-format loading and validation, residency tiers, batched LoRA math.

No Ray, no HTTP, and no workers/: the engine in workers/ uses this package directly, never the
other way round (tests/test_layering.py checks it).
"""
