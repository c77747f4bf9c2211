"""The operator's own writes stand in for cached objects the watch has not caught up on,
and only for those: anyone else's newer write is seen."""

from infleet.operator.own_writes import OwnWrites

KEY = ("team-a", "chat")


def service(rv: str) -> dict:
    return {"kind": "InferenceService", "metadata": {"name": "chat", "resourceVersion": rv}}


def deployment(generation: int, replicas: int, uid: str = "uid-1") -> dict:
    meta = {"name": "chat-spot", "generation": generation, "uid": uid}
    return {"kind": "Deployment", "metadata": meta, "spec": {"replicas": replicas}}


def test_a_status_write_stands_in_until_the_cache_leaves_the_versions_it_replaced():
    own = OwnWrites()
    own.wrote(KEY, "1", service("2"))
    own.wrote(KEY, "2", service("3"))  # built on the first: a chain
    assert own.service(KEY, service("1"))["metadata"]["resourceVersion"] == "3"
    assert own.service(KEY, service("2"))["metadata"]["resourceVersion"] == "3"
    someone_else = service("4")
    assert own.service(KEY, someone_else) is someone_else
    assert own.service(KEY, service("1"))["metadata"]["resourceVersion"] == "1"  # ended


def test_an_applied_child_stands_in_while_the_cached_one_is_older_or_missing():
    own = OwnWrites()
    own.applied(KEY, [deployment(2, 3)])
    assert own.children(KEY, [deployment(1, 1)]) == [deployment(2, 3)]
    assert own.children(KEY, []) == [deployment(2, 3)]  # created: not in the cache yet
    edited = deployment(3, 9)  # a hand edit after ours: seen, and the overlay ends
    assert own.children(KEY, [edited]) == [edited]
    assert own.children(KEY, [deployment(1, 1)]) == [deployment(1, 1)]


def test_a_child_deleted_before_the_cache_showed_our_write_is_missing_again():
    """The race behind a deleted Deployment left alone: the operator applies it, someone
    deletes it before any reconcile saw it cached, and the cache never shows it again.
    Its DELETED event ends the stand-in, so the next reconcile finds it missing."""
    own = OwnWrites()
    ours = deployment(1, 1)
    own.applied(KEY, [ours])
    assert own.children(KEY, []) == [ours]  # the watch lags: ours stands in
    own.deleted(KEY, "Deployment", ours["metadata"])
    assert own.children(KEY, []) == []


def test_a_deleted_event_before_the_write_is_recorded_still_ends_it():
    """The reconcile writes the status before it records what it applied; the test (or
    anyone) may delete the child, and the watch report it, in between."""
    own = OwnWrites()
    ours = deployment(1, 1)
    own.deleted(KEY, "Deployment", ours["metadata"])
    own.applied(KEY, [ours])
    assert own.children(KEY, []) == []
    again = deployment(1, 1, uid="uid-2")  # the next reconcile makes it again
    own.applied(KEY, [again])
    assert own.children(KEY, []) == [again]


def test_a_late_deleted_event_of_the_old_object_leaves_the_recreated_one_standing_in():
    own = OwnWrites()
    recreated = deployment(1, 1, uid="uid-2")
    own.applied(KEY, [recreated])
    own.deleted(
        KEY, "Deployment", deployment(1, 1, uid="uid-1")["metadata"]
    )  # the one it replaced, seen late
    assert own.children(KEY, []) == [recreated]
    own.deleted(KEY, "ConfigMap", {"name": "chat-spot", "uid": "uid-2"})
    assert own.children(KEY, []) == [recreated]  # another kind of the same name
