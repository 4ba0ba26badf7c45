"""CategoryCounter: counts, overflow, missing values, encoded input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sketches import CategoryCounter

CATEGORIES = ["red", "green", "blue"]
values_strategy = st.lists(st.sampled_from(["red", "green", "blue", "pink", "", None, float("nan"), 3]), max_size=200)


@settings(deadline=None, max_examples=200)
@given(values=values_strategy)
def test_counts_categories_overflow_and_missing(values):
    counter = CategoryCounter(CATEGORIES).add_many(values)
    for i, name in enumerate(CATEGORIES):
        assert counter.counts[i] == sum(v == name for v in values)
    missing = sum(v is None or (isinstance(v, float) and v != v) for v in values)
    assert counter.missing == missing
    assert counter.overflow == len(values) - missing - sum(v in CATEGORIES for v in values)
    assert counter.count + counter.missing == len(values)


@settings(deadline=None, max_examples=100)
@given(a=values_strategy, b=values_strategy, c=values_strategy)
def test_merge_is_exact_associative_and_commutative(a, b, c):
    def k(v):
        return CategoryCounter(CATEGORIES).add_many(v)

    assert k(a).merge(k(b)).merge(k(c)) == k(a).merge(k(b).merge(k(c))) == k(c).merge(k(a)).merge(k(b)) == k(a + b + c)


def test_encoded_input_equals_plain_input():
    dictionary = ["blue", "pink", "red"]
    indices = np.array([0, 2, 2, -1, 1, 0, 2])
    plain = [dictionary[i] if i >= 0 else None for i in indices]
    assert CategoryCounter(CATEGORIES).add_encoded(indices, dictionary) == CategoryCounter(CATEGORIES).add_many(plain)


def test_numbers_match_their_string_category():
    assert CategoryCounter(["1", "2"]).add_many([1, 2, 2, 3]).counts.tolist() == [1.0, 2.0, 1.0]


def test_merge_refuses_other_categories():
    with pytest.raises(ValueError, match=r"different categories: \['a'\] and \['b'\]"):
        CategoryCounter(["a"]).merge(CategoryCounter(["b"]))


def test_rejects_repeated_categories():
    with pytest.raises(ValueError, match="distinct"):
        CategoryCounter(["a", "a"])
