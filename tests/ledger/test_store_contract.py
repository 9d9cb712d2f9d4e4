"""The primitives every backend must provide, exactly alike."""

from __future__ import annotations

import time

from handler.ledger import Store, Write


def test_write_with_expect_zero_creates_once(store: Store) -> None:
    assert store.commit([Write("x/1", {"a": 1}, 0)])
    assert not store.commit([Write("x/1", {"a": 2}, 0)])
    rec = store.get(["x/1"])["x/1"]
    assert rec.value == {"a": 1}
    assert rec.version == 1


def test_write_with_current_version_replaces_and_bumps_version(store: Store) -> None:
    store.commit([Write("x/1", {"a": 1}, 0)])
    assert store.commit([Write("x/1", {"a": 2}, 1)])
    assert not store.commit([Write("x/1", {"a": 3}, 1)])
    rec = store.get(["x/1"])["x/1"]
    assert (rec.value, rec.version) == ({"a": 2}, 2)


def test_commit_is_all_or_nothing(store: Store) -> None:
    store.commit([Write("x/1", {"a": 1}, 0)])
    assert not store.commit([Write("x/2", {"b": 1}, 0), Write("x/1", {"a": 9}, 0)])
    got = store.get(["x/1", "x/2"])
    assert "x/2" not in got
    assert got["x/1"].value == {"a": 1}


def test_delete_needs_the_current_version(store: Store) -> None:
    store.commit([Write("x/1", {"a": 1}, 0)])
    assert not store.commit([Write("x/1", None, 5)])
    assert store.commit([Write("x/1", None, 1)])
    assert store.get(["x/1"]) == {}
    # a deleted record can be created again
    assert store.commit([Write("x/1", {"a": 2}, 0)])


def test_due_lists_queue_records_earliest_first_up_to_limit(store: Store) -> None:
    store.commit([Write("q/a", {"n": 1}, 0, due_at=30.0), Write("q/b", {"n": 2}, 0, due_at=10.0),
                  Write("q/c", {"n": 3}, 0, due_at=20.0), Write("q/d", {"n": 4}, 0, due_at=99.0),
                  Write("f/x", {"n": 5}, 0)])
    assert store.due(50.0, 10) == ["q/b", "q/c", "q/a"]
    assert store.due(50.0, 2) == ["q/b", "q/c"]
    assert store.due(5.0, 10) == []


def test_due_follows_rewrites_and_deletes(store: Store) -> None:
    store.commit([Write("q/a", {"n": 1}, 0, due_at=10.0)])
    store.commit([Write("q/a", {"n": 1}, 1, due_at=100.0)])
    assert store.due(50.0, 10) == []
    store.commit([Write("q/a", None, 2)])
    assert store.due(500.0, 10) == []


def test_scan_returns_only_the_prefix(store: Store) -> None:
    store.commit([Write("j/r/1", {"n": 1}, 0), Write("j/r/2", {"n": 2}, 0), Write("q/r/1", {}, 0)])
    assert sorted(k for k, _ in store.scan("j/")) == ["j/r/1", "j/r/2"]


def test_expiry_time_is_kept_for_the_reader(store: Store) -> None:
    store.commit([Write("f/1", {"s": 1}, 0, expires_at=2_000_000_000.0)])
    rec = store.get(["f/1"])["f/1"]
    assert rec.expires_at is not None and abs(rec.expires_at - 2_000_000_000.0) < 1.5
    assert rec.live(1_999_999_000.0)
    assert not rec.live(2_000_000_002.0)


def test_values_round_trip_nested_json(store: Store) -> None:
    value = {"s": "é/ü", "n": 1.5, "l": [1, {"k": None}], "b": True}
    store.commit([Write("x/1", value, 0)])
    assert store.get(["x/1"])["x/1"].value == value


def test_a_record_past_its_expiry_reads_as_absent_or_expired_and_can_be_replaced(store: Store) -> None:
    # DynamoDB deletes expired items up to days late, Redis at once, SQLite now and then: whichever,
    # the reader must see the record as gone, and the version it is given must let it write.
    past = time.time() - 10
    store.commit([Write("f/1", {"s": 1}, 0, expires_at=past)])
    rec = store.get(["f/1"]).get("f/1")
    assert rec is None or not rec.live(time.time())
    assert store.commit([Write("f/1", {"s": 2}, rec.version if rec else 0)])
    assert store.get(["f/1"])["f/1"].value == {"s": 2}


def test_rewrite_without_expiry_keeps_the_record(store: Store) -> None:
    store.commit([Write("j/1", {"n": 1}, 0, expires_at=time.time() + 3600)])
    store.commit([Write("j/1", {"n": 2}, 1)])
    assert store.get(["j/1"])["j/1"].expires_at is None


def test_deleting_an_absent_record_expects_version_zero(store: Store) -> None:
    assert not store.commit([Write("x/absent", None, 1)])
    assert store.commit([Write("x/absent", None, 0)])
    assert store.get(["x/absent"]) == {}


def test_get_returns_only_existing_records(store: Store) -> None:
    store.commit([Write("x/1", {"a": 1}, 0)])
    assert set(store.get(["x/1", "x/2", "x/1"])) == {"x/1"}
    assert store.get([]) == {}


def test_a_hundred_writes_commit_together_or_not_at_all(store: Store) -> None:
    store.commit([Write("x/099", {"n": 0}, 0)])
    batch = [Write(f"x/{i:03d}", {"n": i}, 0) for i in range(100)]
    assert not store.commit(batch)  # x/099 exists: nothing of the batch may be written
    assert set(store.get([w.key for w in batch])) == {"x/099"}
    assert store.commit(batch[:99])
    assert len(store.get([w.key for w in batch])) == 100


def test_scan_treats_the_prefix_literally(store: Store) -> None:
    store.commit([Write("x[1]/*a", {}, 0), Write("x1/b", {}, 0), Write("x?/c", {}, 0)])
    assert [k for k, _ in store.scan("x[1]/*")] == ["x[1]/*a"]
    assert [k for k, _ in store.scan("x?")] == ["x?/c"]


def test_an_empty_commit_succeeds_and_changes_nothing(store: Store) -> None:
    assert store.commit([])
    assert list(store.scan("")) == []
