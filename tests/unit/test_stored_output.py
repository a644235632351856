"""The runs whose output the store holds: what a late line's budget continues from."""

from __future__ import annotations

from array import array

from hypothesis import given
from hypothesis import strategies as st

from observer.recording.attribution import StoredOutput

ids = st.text("0123456789abcdef", min_size=1, max_size=32)


def loaded(invocation_ids: set[str]) -> array[int]:
    """As store.database.recent_output returns them."""
    return array("q", sorted(hash(i) for i in invocation_ids))


@given(st.sets(ids), st.lists(st.tuples(st.booleans(), ids)), st.lists(ids))
def test_it_answers_as_a_set_of_the_ids_would_for_the_runs_not_in_memory(
    at_start: set[str], changes: list[tuple[bool, str]], asked: list[str]
) -> None:
    stored = StoredOutput(loaded(at_start))
    model = set(at_start)
    in_memory: set[str] = set()
    for added, invocation_id in changes:
        if added:  # its budget forgotten (forget_old_budgets)
            stored.add(invocation_id)
            model.add(invocation_id)
            in_memory.discard(invocation_id)
        elif invocation_id not in in_memory and invocation_id in stored:  # loaded (_budget)
            stored.discard(invocation_id)
            model.discard(invocation_id)
            in_memory.add(invocation_id)
    for invocation_id in [*asked, *at_start, *model]:
        if invocation_id not in in_memory:  # only asked when its budget is not in memory
            assert (invocation_id in stored) == (invocation_id in model)


def test_ids_read_again_after_a_rebuild_are_added_to_those_read_before() -> None:
    stored = StoredOutput()
    stored.update(loaded({"a" * 32, "b" * 32}))
    stored.update(loaded({"c" * 32}))

    assert all(i * 32 in stored for i in "abc")
    assert "d" * 32 not in stored
