from __future__ import annotations

import pytest

from router.load import LoadSnapshot, LoadTracker
from router.speculation import MaxLoad, SpeculationPolicy
from workers.protocol import GenerateRequest, SpeculationMode
from workers.sampling_params import SamplingParams


def request(adapter: str | None = None, **sampling) -> GenerateRequest:
    return GenerateRequest("r", (1, 2, 3), SamplingParams(**sampling), adapter)


IDLE = LoadSnapshot()


def test_off_never_speculates() -> None:
    assert SpeculationPolicy("off").decide(request(), IDLE).mode == SpeculationMode.NONE


@pytest.mark.parametrize(
    ("req", "load", "reason"),
    [
        (request(beam_width=2), IDLE, "beam search"),
        (request(temperature=1.5), IDLE, "temperature"),
        (request(adapter="sql"), IDLE, "adapter"),
        (request(), LoadSnapshot(kv_usage=0.95), "KV usage"),
        (request(), LoadSnapshot(batch_occupancy=0.9), "occupancy"),
        (request(), LoadSnapshot(acceptance_rate=0.1, num_drafted=500), "acceptance"),
    ],
)
def test_rules_veto_with_a_reason(req, load, reason) -> None:
    decision = SpeculationPolicy("colocated").decide(req, load)
    assert decision.mode == SpeculationMode.NONE
    assert reason in decision.reason


def test_configured_mode_applies_to_eligible_requests() -> None:
    greedy = request(temperature=0)
    assert SpeculationPolicy("remote").decide(greedy, IDLE).mode == SpeculationMode.REMOTE
    assert SpeculationPolicy("colocated").decide(greedy, IDLE).mode == SpeculationMode.COLOCATED


def test_auto_moves_the_draft_off_the_replica_as_load_grows() -> None:
    policy = SpeculationPolicy("auto", remote_above_occupancy=0.25)
    assert policy.decide(request(), LoadSnapshot(batch_occupancy=0.1)).mode == "colocated"
    assert policy.decide(request(), LoadSnapshot(batch_occupancy=0.5)).mode == "remote"
    local_only = SpeculationPolicy("auto", available=frozenset({SpeculationMode.COLOCATED}))
    assert local_only.decide(request(), LoadSnapshot(batch_occupancy=0.5)).mode == "colocated"
    remote_only = SpeculationPolicy("auto", available=frozenset({SpeculationMode.REMOTE}))
    assert remote_only.decide(request(), IDLE).mode == "remote"


def test_a_mode_without_its_proposer_decodes_plainly() -> None:
    policy = SpeculationPolicy("colocated", available=frozenset({SpeculationMode.REMOTE}))
    decision = policy.decide(request(), IDLE)
    assert decision.mode == SpeculationMode.NONE and "no colocated proposer" in decision.reason


def test_rules_compose_without_subclassing() -> None:
    strict = SpeculationPolicy("colocated", rules=(MaxLoad(max_batch_occupancy=0.1),))
    assert strict.decide(request(adapter="sql"), IDLE).mode == SpeculationMode.COLOCATED
    assert strict.decide(request(), LoadSnapshot(batch_occupancy=0.2)).mode == "none"


def test_load_tracker_learns_acceptance_per_adapter_and_occupancy() -> None:
    tracker = LoadTracker(batch_slots=4, min_drafted=10)
    tracker.on_start()
    assert tracker.snapshot(None).batch_occupancy == 0.25
    tracker.on_finish(None, drafted=20, accepted=5)
    assert tracker.snapshot(None).acceptance_rate == pytest.approx(0.25)
    assert tracker.snapshot("sql").acceptance_rate is None
    assert tracker.snapshot(None).batch_occupancy == 0.0


def test_a_low_acceptance_veto_fades_and_is_measured_again() -> None:
    """MinAcceptance stops drafting; the plain requests after it fade the old rate until it
    is unknown, the next request drafts, and a now-good rate lets speculation back in."""
    policy = SpeculationPolicy("colocated")
    tracker = LoadTracker(batch_slots=4)
    tracker.on_finish(None, drafted=400, accepted=40)  # a bad stretch: 0.10
    assert "acceptance" in policy.decide(request(), tracker.snapshot(None)).reason
    plain = 0
    while policy.decide(request(), tracker.snapshot(None)).mode == SpeculationMode.NONE:
        tracker.on_finish(None, drafted=0, accepted=0)  # vetoed, so decoded plainly
        plain += 1
        assert plain < 200, "the veto never lifted"
    assert tracker.snapshot(None).acceptance_rate is None  # unknown again, so it probes
    tracker.on_finish(None, drafted=120, accepted=100)  # the probe: drafts accept well now
    snapshot = tracker.snapshot(None)
    assert snapshot.acceptance_rate is not None and snapshot.acceptance_rate > 0.5
    assert policy.decide(request(), snapshot).mode == SpeculationMode.COLOCATED


def test_a_request_can_opt_out_of_speculation(served_model_dir):
    from dataclasses import replace

    from router.prepared import Endpoint
    from router.schema import CompletionRequest
    from tests.factories import make_engine
    from tests.router.local_app import MODEL, make_local_app
    from workers.async_engine import AsyncEngine
    from workers.protocol import SpeculationMode

    engine = AsyncEngine(make_engine(served_model_dir))
    _, service, _ = make_local_app(served_model_dir, engine)
    service.speculation = replace(service.speculation, mode="ngram", rules=())
    prompt = (5, 6, 7)
    chosen = {}
    for opt in (None, True, False):
        body = CompletionRequest(model=MODEL, prompt="x", speculative=opt)
        prepared = service._prepare(Endpoint.COMPLETIONS, body, None, prompt)
        chosen[opt] = prepared.engine_request.speculation
    assert chosen == {
        None: SpeculationMode.NGRAM,
        True: SpeculationMode.NGRAM,
        False: SpeculationMode.NONE,
    }
