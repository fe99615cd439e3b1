"""Token-length distributions for prompts and outputs (pydantic: they come from a workload file).

Every distribution samples whole token counts, clipped to [min, max] so a long tail never asks
for more than the model's context or less than one token.
"""

from __future__ import annotations

import math
import random
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Bounded(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min: int = Field(1, ge=1, description="Smallest token count sampled.")
    max: int = Field(4096, ge=1, description="Largest token count sampled.")

    @model_validator(mode="after")
    def _ordered(self) -> _Bounded:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max}); swap them")
        return self

    def clip(self, value: float) -> int:
        return max(self.min, min(self.max, round(value)))


class Fixed(_Bounded):
    kind: Literal["fixed"] = Field(description="Always the same length.")
    value: int = Field(ge=1, description="The token count.")

    def sample(self, rng: random.Random) -> int:
        return self.clip(self.value)

    @property
    def mean(self) -> float:
        return float(self.clip(self.value))


class Uniform(_Bounded):
    kind: Literal["uniform"] = Field(description="Uniform between low and high (inclusive).")
    low: int = Field(ge=1, description="Smallest length.")
    high: int = Field(ge=1, description="Largest length.")

    def sample(self, rng: random.Random) -> int:
        return self.clip(rng.randint(min(self.low, self.high), max(self.low, self.high)))

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2


class Normal(_Bounded):
    kind: Literal["normal"] = Field(description="Gaussian, rounded and clipped.")
    mean_tokens: float = Field(gt=0, description="Mean length.")
    std: float = Field(ge=0, description="Standard deviation.")

    def sample(self, rng: random.Random) -> int:
        return self.clip(rng.gauss(self.mean_tokens, self.std))

    @property
    def mean(self) -> float:
        return self.mean_tokens


class LogNormal(_Bounded):
    """Chat traffic: most requests short, a long tail of long ones."""

    kind: Literal["lognormal"] = Field(description="Log-normal: a median and a spread.")
    median: float = Field(gt=0, description="Median length.")
    sigma: float = Field(0.5, ge=0, description="Standard deviation of the log length.")

    def sample(self, rng: random.Random) -> int:
        return self.clip(rng.lognormvariate(math.log(self.median), self.sigma))

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)


Distribution = Annotated[Fixed | Uniform | Normal | LogNormal, Field(discriminator="kind")]
