"""The registry discipline: one name, one provider; lazy backends; one spec grammar; versions recorded."""

from __future__ import annotations

import json
import logging
from typing import ClassVar

import pytest

from manyminds.errors import ConfigError
from manyminds.plugins import Registry, distribution_of, parse_spec, plugin_versions
from tests.test_cli import cli


def test_a_name_taken_by_a_built_in_is_refused_naming_both_providers():
    from manyminds.strategies import SelfConsistency

    with pytest.raises(ConfigError, match=r"strategy 'self-consistency' is registered twice: by "
                                          r"manyminds\.strategies\.self_consistency\.SelfConsistency \(manyminds .*\) "
                                          r"and by tests\.test_plugins\..*Impostor; rename one"):
        class Impostor(SelfConsistency):
            name: ClassVar[str] = "self-consistency"

    from manyminds.aggregators.base import REGISTRY, aggregator

    with pytest.raises(ConfigError, match="aggregator 'majority' is registered twice"):
        @aggregator("majority")
        class Mine:
            pass
    assert REGISTRY.get("majority").__module__ == "manyminds.aggregators.majority", "the built-in stays"


def test_the_same_definition_again_replaces_itself():
    registry: Registry[type] = Registry("thing", "manyminds.test-things")

    def define() -> type:
        class Thing:
            pass
        return Thing

    first, again = define(), define()
    registry.register("thing", first)
    registry.register("thing", again)  # a module imported twice, a class redefined in place
    assert registry.get("thing") is again


def test_lazy_entries_load_on_first_use_and_a_clash_keeps_the_first(caplog):
    registry: Registry[object] = Registry("thing", "manyminds.test-things", lazy_plugins=True)
    registry.declare("json", "json:dumps")
    assert registry.names() == ["json"]
    with caplog.at_level(logging.WARNING, logger="manyminds.plugins"):
        registry.declare("json", "pickle:dumps")
    assert "declared twice: by json:dumps and by pickle:dumps" in caplog.text
    assert registry.get("json") is json.dumps
    registry.declare("broken", "no_such_module_here:thing")
    with pytest.raises(ConfigError, match="thing 'broken' .* failed to load"):
        registry.get("broken")


@pytest.mark.parametrize("text, argument, expected", [
    ("majority", None, ("majority", {})),
    ("weighted:by=logprob", None, ("weighted", {"by": "logprob"})),
    ("sprt:alpha=0.05,p1=0.7", "alpha", ("sprt", {"alpha": 0.05, "p1": 0.7})),
    ("esc:5", "window", ("esc", {"window": 5})),
    ("selection:fallback=rpc", None, ("selection", {"fallback": "rpc"})),
])
def test_one_spec_grammar(text, argument, expected):
    assert parse_spec(text, "thing", argument) == expected


@pytest.mark.parametrize("text", ["weighted:logprob", ":x=1", "esc:=3"])
def test_a_malformed_spec_is_an_error_naming_it(text):
    with pytest.raises(ConfigError, match=f"thing '{text}'"):
        parse_spec(text, "thing")


def test_runs_record_the_versions_of_what_they_are_built_from():
    from manyminds import __version__, strategies

    cascade = strategies.make("cascade", 8)
    assert plugin_versions([cascade]) == {"manyminds": __version__}, "the cascade, its stages and their aggregators"
    assert distribution_of(test_one_spec_grammar) == ("tests.test_plugins", None), "no distribution provides a test"


def test_the_plugins_command_lists_every_kind_with_its_provider():
    rows = [json.loads(line) for line in cli("plugins", "--json").stdout.splitlines()]
    kinds = {r["kind"] for r in rows}
    assert kinds == {"strategy", "aggregator", "verifier", "stopping rule", "backend"}
    local = next(r for r in rows if r["kind"] == "backend" and r["name"] == "local")
    assert local["provided_by"] == "manyminds.backends.local.from_spec" and local["distribution"] == "manyminds"
    assert any(r["name"] == "exemplar-resampling" for r in rows)


def test_a_registered_aggregator_records_the_arguments_it_was_built_with():
    from manyminds.aggregators.base import REGISTRY, aggregator, get_aggregator

    @aggregator("test-longest")
    class Longest:
        def __init__(self, minimum: int = 3, key=len, note: str | None = None) -> None:
            self.minimum, self.key = minimum, key

        def __call__(self, task, candidates):
            raise NotImplementedError

    try:
        assert get_aggregator("test-longest", minimum=5).params() == {"minimum": 5}, "a function is not recorded"
        assert get_aggregator("test-longest").params() == {"minimum": 3}, "defaults are; None is left out"
        with pytest.raises(ConfigError, match="aggregator 'test-longest': minimum: Input should be a valid integer"):
            get_aggregator("test-longest", minimum="many")
        with pytest.raises(ConfigError, match=r"aggregator 'majority' takes no bogus \(it takes nothing\)"):
            get_aggregator("majority", bogus=1)  # a class without __init__ of its own still refuses arguments
    finally:
        REGISTRY._entries.pop("test-longest")


def test_verifier_specs_take_parameters_checked_against_the_factory():
    from manyminds.backends import Scripted
    from manyminds.verifiers.base import VerifierOptions, make_verifier

    options = VerifierOptions(backend=Scripted(["Yes"]))
    judge = make_verifier("p-true:samples=3,threshold=0.6", options)
    assert (judge.samples, judge.threshold) == (3, 0.6)
    with pytest.raises(ConfigError, match=r"verifier 'p-true' takes no nope \(it takes samples, threshold"):
        make_verifier("p-true:nope=1", options)
    with pytest.raises(ConfigError, match="verifier 'math': timeout: Input should be a valid integer"):
        make_verifier("math:timeout=soon", options)


def test_backend_specs_take_keyword_parameters_and_never_a_credential():
    from manyminds.backends import from_spec

    keyword = from_spec("openai:model=gpt-x,base_url=http://127.0.0.1:9/v1,batch_width=64")
    short = from_spec("openai:gpt-x@http://127.0.0.1:9/v1")
    assert keyword.cache_identity() == short.cache_identity() and keyword.capabilities.batch_width == 64
    assert from_spec("scripted:The answer is x=3.|4").model == "scripted", "a reply is never read as keywords"
    with pytest.raises(ConfigError, match=r"a credential \(api_key\) is never given in a spec"):
        from_spec("openai:model=m,api_key=sk-not-this")
    with pytest.raises(ConfigError, match=r"backend 'openai' takes no colour \(it takes model, base_url"):
        from_spec("openai:model=m,colour=red")
