"""The operator's own writes stand in for cached objects the watch has not caught up on,
and only for those: anyone else's newer write is seen."""

from infleet.operator.own_writes import OwnWrites

KEY = ("team-a", "chat")


def service(rv: str) -> dict:
    return {"kind": "InferenceService", "metadata": {"name": "chat", "resourceVersion": rv}}


def deployment(generation: int, replicas: int) -> dict:
    meta = {"name": "chat-spot", "generation": generation}
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
