"""Property test: random sampling settings and adapter configs, each next to normal
requests, never hurt the engine. A case is either refused with a validation error
(ValueError naming its field) or decodes to a normal finish; the normal requests always
equal transformers, and every KV block returns."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.factories import hf_greedy, make_engine, random_prompts
from tests.lora_factories import make_peft_adapter
from workers.config import LoRAConfig
from workers.engine import LLMEngine
from workers.errors import AdapterLoadError
from workers.protocol import FinishReason, GenerateRequest, SpeculationMode
from workers.request_failure import NON_FINITE
from workers.sampling_params import SamplingParams
from workers.spec.config import SpecConfig

VOCAB = 128
NEW_TOKENS = 6
FIELDS = set(SamplingParams.__dataclass_fields__)

extreme_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 1e-5, 1.0, 2.0, 1e300, 1.7e308, -1e-300]),
    st.floats(min_value=-3, max_value=3),
)
extreme_ints = st.one_of(
    st.integers(min_value=-3, max_value=10),
    st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64, 2**70, -(2**63), -(2**63) - 1, 100000]),
)
token_ids = st.one_of(st.integers(min_value=0, max_value=VOCAB - 1), extreme_ints)

sampling_kwargs = st.fixed_dictionaries(
    {},
    optional={
        "max_tokens": st.one_of(st.integers(min_value=1, max_value=NEW_TOKENS), extreme_ints),
        "min_tokens": st.one_of(st.integers(min_value=0, max_value=NEW_TOKENS), extreme_ints),
        "temperature": extreme_floats,
        "top_k": st.one_of(st.integers(min_value=-1, max_value=VOCAB + 5), extreme_ints),
        "top_p": extreme_floats,
        "min_p": extreme_floats,
        "repetition_penalty": extreme_floats,
        "presence_penalty": extreme_floats,
        "frequency_penalty": extreme_floats,
        "length_penalty": extreme_floats,
        "seed": st.one_of(st.none(), extreme_ints),
        "stop_token_ids": st.lists(token_ids, max_size=4).map(tuple),
        "ignore_eos": st.booleans(),
        "logprobs": st.one_of(st.none(), st.integers(min_value=-1, max_value=25)),
        "n": st.integers(min_value=-1, max_value=4),
        "beam_width": st.integers(min_value=0, max_value=4),
    },
)
# Values inside what validation accepts, with weight on its edges: these must all decode.
in_range = st.fixed_dictionaries(
    {"max_tokens": st.integers(min_value=1, max_value=NEW_TOKENS)},
    optional={
        "min_tokens": st.integers(min_value=0, max_value=NEW_TOKENS),
        "temperature": st.one_of(
            st.sampled_from([0.0, 1e-5, 1.1e-5, 1e3, 1e300, 1.7e308]),
            st.floats(min_value=0, max_value=3),
        ),
        "top_k": st.sampled_from([-1, 0, 1, 2, VOCAB - 1, VOCAB, VOCAB + 100, 2**63]),
        "top_p": st.one_of(
            st.sampled_from([5e-324, 1e-300, 1e-8, 1.0]), st.floats(min_value=1e-6, max_value=1)
        ),
        "min_p": st.one_of(st.sampled_from([0.0, 5e-324, 1.0]), st.floats(0, 1)),
        "repetition_penalty": st.one_of(
            st.sampled_from([0.01, 0.0100001, 99.99, 100.0]),
            st.floats(min_value=0.01, max_value=100),
        ),
        "presence_penalty": st.one_of(st.sampled_from([-2.0, 2.0]), st.floats(-2, 2)),
        "frequency_penalty": st.one_of(st.sampled_from([-2.0, 2.0]), st.floats(-2, 2)),
        "length_penalty": st.sampled_from([-100.0, -1.0, 0.0, 1.0, 100.0]),
        "seed": st.sampled_from([None, 0, 1, -(2**63), 2**63 - 1]),
        "stop_token_ids": st.lists(
            st.integers(min_value=0, max_value=VOCAB - 1), max_size=VOCAB
        ).map(tuple),
        "ignore_eos": st.booleans(),
        "logprobs": st.one_of(st.none(), st.integers(min_value=0, max_value=20)),
        "n": st.integers(min_value=1, max_value=3),
        "beam_width": st.integers(min_value=1, max_value=3),
    },
)
valid_prompts = st.lists(st.integers(min_value=0, max_value=VOCAB - 1), min_size=1, max_size=12)
prompts = st.lists(token_ids, min_size=0, max_size=12)
modes = st.sampled_from([SpeculationMode.NONE, SpeculationMode.NGRAM])


@pytest.fixture(scope="module")
def fuzz_engine(llama_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fuzz-adapters")
    make_peft_adapter(llama_dir, root / "template", seed=7, rank=4)
    engine = make_engine(
        llama_dir,
        num_blocks=128,
        lora=LoRAConfig(max_loras=2, max_lora_rank=8, adapter_roots=(str(root),)),
        spec=SpecConfig(num_speculative_tokens=3),
    )
    return engine, root


@pytest.fixture(scope="module")
def normal_requests(llama_hf) -> list[tuple[GenerateRequest, list[int]]]:
    greedy = SamplingParams(max_tokens=NEW_TOKENS, temperature=0, ignore_eos=True)
    out = []
    for i, prompt in enumerate(random_prompts([6, 11], seed=5)):
        out.append((GenerateRequest(f"normal-{i}", tuple(prompt), greedy), prompt))
    return [(spec, hf_greedy(llama_hf, prompt, NEW_TOKENS)) for spec, prompt in out]


def run_beside(engine: LLMEngine, normal, case: GenerateRequest | None) -> list:
    """Run the normal requests (and the case) to the end; the case's deltas."""
    for spec, _ in normal:
        engine.add_request(spec)
    if case is not None:
        engine.add_request(case)
    outputs: dict[str, list[int]] = {spec.request_id: [] for spec, _ in normal}
    case_deltas = []
    while engine.has_unfinished():
        for delta in engine.step():
            if case is not None and delta.request_id == case.request_id:
                case_deltas.append(delta)
            else:
                outputs[delta.request_id] += delta.token_ids
    for spec, expected in normal:
        assert outputs[spec.request_id] == expected, spec.request_id
    stats = engine.stats()
    assert stats.num_free_blocks == stats.num_total_blocks
    return case_deltas


def assert_refusal_names_a_field(error: ValueError) -> None:
    message = str(error)
    assert message.split(" ", 1)[0] in FIELDS | {"the", "token", "n/beam_width"}, message


FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same cases in every CI run; run with --hypothesis-seed to explore
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(kwargs=sampling_kwargs, prompt=prompts, mode=modes)
def test_random_sampling_params_never_hurt_the_engine(
    fuzz_engine, normal_requests, kwargs, prompt, mode
) -> None:
    check_case(fuzz_engine[0], normal_requests, kwargs, prompt, mode)


@FUZZ
@given(kwargs=in_range, prompt=valid_prompts, mode=modes)
def test_edge_values_inside_the_ranges_decode(
    fuzz_engine, normal_requests, kwargs, prompt, mode
) -> None:
    check_case(fuzz_engine[0], normal_requests, kwargs, prompt, mode)


def check_case(engine: LLMEngine, normal, kwargs: dict, prompt: list[int], mode) -> None:
    """Refused with a ValueError that names its field, or decoded to a normal finish."""
    try:
        params = SamplingParams(**kwargs)
    except ValueError as e:
        event("refused by SamplingParams")
        assert_refusal_names_a_field(e)
        run_beside(engine, normal, None)
        return
    case = GenerateRequest("case", tuple(prompt), params, speculation=mode)
    try:
        engine.validate(case)
    except ValueError as e:
        event("refused by the engine")
        assert_refusal_names_a_field(e)
        run_beside(engine, normal, None)
        return
    event("decoded")
    deltas = run_beside(engine, normal, case)
    finished = [d for d in deltas if d.finished]
    assert len(finished) == params.n
    assert all(d.finish_reason in (FinishReason.STOP, FinishReason.LENGTH) for d in finished)
    assert all(0 <= t < VOCAB for d in deltas for t in d.token_ids)
    if params.logprobs is not None and not params.use_beam_search:
        logprobs = [lp for d in deltas for lp in d.logprobs or ()]
        assert all(math.isfinite(lp.logprob) or lp.logprob == -math.inf for lp in logprobs)


adapter_numbers = st.one_of(
    st.sampled_from([1, 4, 8, 16, 0.5, 1e-3, 1e6, 1e30]),  # accepted (1e30 overflows later)
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e-300, 1e300, True, "16", None]),
)


@FUZZ
@given(
    alpha=adapter_numbers,
    rank=st.one_of(st.sampled_from([4, 8]), st.sampled_from([0, -4, 9, True, 4.0, "4", None])),
    rslora=st.booleans(),
)
def test_random_adapter_configs_never_hurt_the_engine(
    fuzz_engine, normal_requests, alpha, rank, rslora
) -> None:
    engine, root = fuzz_engine
    target = root / "case"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(root / "template", target)
    config_path = target / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config.update(lora_alpha=alpha, r=rank, use_rslora=rslora)
    config_path.write_text(json.dumps(config))  # NaN and Infinity as Python's json writes them
    try:
        engine.load_adapter("case", "case")
    except AdapterLoadError as e:
        event("adapter refused")
        assert any(word in str(e) for word in ("lora_alpha", "rank", "scaling", "shape"))
        run_beside(engine, normal_requests, None)
        return
    params = SamplingParams(max_tokens=NEW_TOKENS, seed=3, logprobs=2)
    case = GenerateRequest("case", (5, 6, 7, 8), params, adapter="case")
    deltas = run_beside(engine, normal_requests, case)
    last = deltas[-1]
    event(f"adapter loaded, request {last.finish_reason}")
    if last.finish_reason == FinishReason.ERROR:
        assert last.error == NON_FINITE  # an adapter whose output overflows: only it fails
    else:
        assert last.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    engine.unload_adapter("case")
