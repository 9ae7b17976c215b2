"""A long-running application calling `solve` in a loop holds flat memory (objects counted, not timed)."""

import gc

from manyminds.backends import Scripted
from manyminds.cache import CachedBackend, GenerationCache
from manyminds.strategies import SelfConsistency


def _alive(*types):
    gc.collect()
    return {t.__name__: sum(1 for o in gc.get_objects() if type(o) is t) for t in types}


def _compiled_graphs():
    from langgraph.graph.state import CompiledStateGraph

    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, CompiledStateGraph))


def test_a_thousand_solves_with_a_cache_path_keep_nothing_behind(tmp_path):
    backend = Scripted(lambda messages, params, index: f"The answer is {index % 3}.")
    strategy = SelfConsistency(n=4)
    path = tmp_path / "c.db"
    # Warm up: imports, interned values, and langchain's bounded signature caches (an LRU of 256
    # node functions, which keeps the last ~85 graphs reachable until it cycles).
    for k in range(150):
        strategy.solve(f"warm-up {k}", backend=backend, cache=path)
    backend.requests.clear()
    baseline, graphs = _alive(GenerationCache, CachedBackend), _compiled_graphs()
    objects = len(gc.get_objects())
    for k in range(1000):
        strategy.solve(f"What is {k} + 1?", backend=backend, cache=path)
        backend.requests.clear()  # the test double's own log of requests, kept by design
    after = _alive(GenerationCache, CachedBackend)
    assert after["GenerationCache"] <= baseline["GenerationCache"] < 150, (baseline, after)
    assert after["CachedBackend"] <= baseline["CachedBackend"] < 150
    assert _compiled_graphs() <= graphs
    assert len(gc.get_objects()) < objects + 2000  # nothing grows with the number of calls


def test_one_backend_reused_keeps_a_bounded_number_of_graphs():
    from manyminds.strategies.base import MAX_GRAPHS_PER_BACKEND

    backend = Scripted(["The answer is 1."])
    for n in range(1, 3 * MAX_GRAPHS_PER_BACKEND):
        SelfConsistency(n=n).solve("q", backend=backend)
    assert len(backend._manyminds_graphs) == MAX_GRAPHS_PER_BACKEND
    assert SelfConsistency(n=1).compiled(backend) is SelfConsistency(n=1).compiled(backend)  # still memoised
