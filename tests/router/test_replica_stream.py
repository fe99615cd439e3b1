"""The replica stream's wire form: what `pack` makes, `unpack` gives back unchanged."""

from __future__ import annotations

from router.replica_stream import pack, unpack
from workers.protocol import FinishReason, TokenDelta, TokenLogprob


def test_a_packed_batch_unpacks_to_equal_deltas() -> None:
    batch = [
        TokenDelta("cmpl-1", 0, (5, 6), num_prompt_tokens=3, num_generated_tokens=2),
        TokenDelta(
            "cmpl-1",
            1,
            (7,),
            logprobs=(TokenLogprob(7, -0.5, ((7, -0.5), (8, -1.25))),),
            finish_reason=FinishReason.LENGTH,
            num_cached_tokens=2,
            num_drafted_tokens=4,
            num_accepted_tokens=3,
        ),
    ]
    data = pack(batch)
    assert isinstance(data, bytes)
    restored = unpack(data)
    assert restored == batch
    assert restored[1].finish_reason is FinishReason.LENGTH


def test_the_acceptance_marker_survives_packing() -> None:
    assert unpack(pack([])) == []
