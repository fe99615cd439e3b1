"""What `python -m loadtest` was asked to do (pydantic: the command line is a user boundary)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from loadtest.shapes import shape_duration
from loadtest.workload import SLO, Workload


class RunSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None, description="Endpoint base URL (no /v1); None starts the local cluster."
    )
    workload: Path = Field(Path("loadtest/workloads/default.yaml"), description="Workload file.")
    config: Path = Field(Path("config.yaml"), description="Serve config of the local cluster.")
    port: int | None = Field(
        None, ge=0, description="Local cluster HTTP port (0: a free one; None: the config's)."
    )
    duration_s: float | None = Field(
        None, gt=0, description="Run time; None runs the workload's shape once."
    )
    out: Path = Field(Path("out/loadtest"), description="Directory for every output file.")
    api_key: str | None = Field(None, description="Bearer token for the endpoint.")
    model: str | None = Field(None, description="Base model name (overrides the workload's).")
    tokenizer: Path | None = Field(
        None, description="tokenizer.json for exact prompt lengths (local cluster: the model's)."
    )
    gpu_hour_usd: float = Field(2.5, ge=0, description="Price of one GPU-hour for the cost line.")
    num_gpus: float = Field(1.0, gt=0, description="GPUs behind the endpoint during the run.")
    slo_ttft_ms: float | None = Field(None, gt=0, description="Overrides the workload's SLO.")
    slo_tpot_ms: float | None = Field(None, gt=0, description="Overrides the workload's SLO.")
    slo_e2e_ms: float | None = Field(None, gt=0, description="Overrides the workload's SLO.")
    startup_timeout_s: float = Field(300, gt=0, description="Wait for the local cluster.")
    quiet: bool = Field(False, description="No progress line.")

    def run_duration(self, workload: Workload) -> float:
        return self.duration_s or shape_duration(workload.shape)

    def slo(self, workload: Workload) -> SLO:
        overrides = {
            "ttft_ms": self.slo_ttft_ms,
            "tpot_ms": self.slo_tpot_ms,
            "e2e_ms": self.slo_e2e_ms,
        }
        return workload.slo.model_copy(update={k: v for k, v in overrides.items() if v is not None})
