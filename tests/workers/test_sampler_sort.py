"""sort_descending equals torch.sort(descending=True, stable=True): the same values and
indices, ties in index order, for any finite or infinite float32 values, ±0 included."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.sampler_sort import sort_descending

values = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), 3e38, -3e38, 1e-45]),
    st.floats(width=32, allow_nan=False),
)


def assert_equal_to_stable_sort(x: torch.Tensor) -> None:
    want = torch.sort(x, dim=-1, descending=True, stable=True)
    got_values, got_indices = sort_descending(x)
    assert torch.equal(got_indices, want.indices)
    assert torch.equal(got_values, want.values)


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(1, 4), data=st.data())
def test_any_values_sort_as_the_stable_sort(rows: int, data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 40))
    flat = data.draw(st.lists(values, min_size=rows * size, max_size=rows * size))
    assert_equal_to_stable_sort(torch.tensor(flat, dtype=torch.float32).view(rows, size))


@pytest.mark.parametrize("size", [1, 2, 31, 8192, 151936])
def test_large_rows_with_ties_and_masked_tokens(size: int) -> None:
    g = torch.Generator().manual_seed(size)
    x = (torch.randn(3, size, generator=g) * 4).round()  # many ties
    x[0, ::3] = float("-inf")
    assert_equal_to_stable_sort(x)
    assert_equal_to_stable_sort(x[1])  # one row
    with torch.inference_mode():
        assert_equal_to_stable_sort(x.clone())
