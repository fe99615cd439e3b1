"""LoRA adapters: PEFT-format loading and validation, residency tiers, batched LoRA math.

No Ray, no HTTP: the engine in workers/ uses this package directly.
"""
