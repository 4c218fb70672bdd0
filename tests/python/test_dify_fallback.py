"""Provider fallback in sluice.dify's model call (ModelFallbacks, governed_invoke_llm(fallbacks=),
the ModelInstance.invoke_llm patch) against Dify-shaped fakes of our own (test_dify_invoke's
pydantic results and FakeModel). Time is a ManualClock; nothing sleeps."""

from __future__ import annotations

import logging
import sys
import textwrap
import types

import pytest

import sluice
import sluice.dify as dify
from dify_support import (InvokeAuthorizationError, InvokeBadRequestError,
                          InvokeConnectionError, InvokeRateLimitError,
                          InvokeServerUnavailableError)

pytest.importorskip("pydantic")
import test_dify_invoke as base  # noqa: E402  (the Dify-shaped fakes)

PRIMARY = ("openai", "gpt-4o")
CLAUDE = ("anthropic", "claude-3-5-sonnet")
MINI = ("openai", "gpt-4o-mini")


def governor(tokens=1000, concurrency=0, per_model_tokens=None):
    text = f"""
    version: 1
    name: pytest-fallback
    rules:
      - name: tenant-tokens
        match: {{tenant: "*"}}
        key: [tenant]
        tokens: [{{limit: {tokens}, per: 1h}}]
    """
    if concurrency:
        text += f"""
      - name: model-slots
        match: {{provider: "*"}}
        key: [provider, model]
        concurrency: {concurrency}
    """
    if per_model_tokens:
        text += f"""
      - name: claude-tokens
        match: {{provider: anthropic}}
        key: [provider, model]
        tokens: [{{limit: {per_model_tokens}, per: 1h}}]
    """
    return sluice.Governor(textwrap.dedent(text), clock=sluice.ManualClock(0.0))


class Instance:
    """An alternative's ModelInstance as the factory builds it: invoke_llm calls a FakeModel."""

    def __init__(self, provider, model, fake):
        self.provider, self.model, self.fake = provider, model, fake

    def invoke_llm(self, prompt_messages, model_parameters=None, tools=None, stop=None,
                   stream=True, user=None, callbacks=None):
        return self.fake(prompt_messages=prompt_messages, model_parameters=model_parameters,
                         tools=tools, stop=stop, stream=stream, user=user, callbacks=callbacks)


class Factory:
    """model_factory: a FakeModel per (provider, model); records what it built."""

    def __init__(self, **fakes):
        self.fakes = {CLAUDE: fakes.get("claude") or base.FakeModel(text="claude says hi"),
                      MINI: fakes.get("mini") or base.FakeModel(text="mini says hi")}
        self.built = []

    def __call__(self, tenant_id, provider, model):
        self.built.append((tenant_id, provider, model))
        return Instance(provider, model, self.fakes[(provider, model)])


def fallbacks(factory, chain=(CLAUDE, MINI), **options):
    options.setdefault("clock", sluice.ManualClock(0.0))
    return dify.ModelFallbacks({PRIMARY: list(chain)}, model_factory=factory, **options)


def call(g, primary, chains, *, stream=False, provider="openai", model="gpt-4o", **extra):
    return dify.governed_invoke_llm(g, primary, tenant_id="t1", app_id="a1", provider=provider,
                                    model=model, prompt_messages=base.MESSAGES,
                                    model_parameters={"max_tokens": 100}, stream=stream,
                                    user="u1", fallbacks=chains, **extra)


def text_of(chunks):
    return [c.delta.message.content for c in chunks]


# ---- blocking ---------------------------------------------------------------------------------
@pytest.mark.parametrize("failure", [InvokeRateLimitError("429 on every key"),
                                     InvokeConnectionError("connect refused"),
                                     InvokeServerUnavailableError("503")])
def test_a_failing_primary_falls_over_to_the_first_alternative(failure):
    g = governor(tokens=1000)
    factory = Factory(claude=base.FakeModel(text="claude says hi", prompt_tokens=20,
                                            completion_tokens=7))
    primary = base.FakeModel(fail=failure)
    result = call(g, primary, fallbacks(factory))
    assert result.message.content == "claude says hi"
    assert primary.calls == 1 and factory.fakes[CLAUDE].calls == 1
    assert factory.built == [("t1", "anthropic", "claude-3-5-sonnet")]
    assert factory.fakes[MINI].calls == 0
    assert base.remaining(g) == 1000 - 27, \
        "the primary's reservation went back whole; the alternative settled with its usage"


def test_the_chain_goes_on_until_one_answers_and_raises_the_last_failure_when_none_does():
    g = governor()
    factory = Factory(claude=base.FakeModel(fail=InvokeServerUnavailableError("claude 503")))
    result = call(g, base.FakeModel(fail=InvokeRateLimitError("429")), fallbacks(factory))
    assert result.message.content == "mini says hi"
    factory = Factory(claude=base.FakeModel(fail=InvokeServerUnavailableError("claude 503")),
                      mini=base.FakeModel(fail=InvokeConnectionError("mini down")))
    with pytest.raises(InvokeConnectionError, match="mini down") as raised:
        call(g, base.FakeModel(fail=InvokeRateLimitError("429")), fallbacks(factory))
    assert raised.value.sluice_failure.kind == "connect", "Dify's own error, as-is"
    assert base.remaining(g) == 1000 - 15, "only the answer that came back was charged"


def test_each_attempt_is_admitted_on_its_own_provider_and_model():
    g = governor(concurrency=1)
    seen = []

    class Recording(base.FakeModel):
        def __call__(self, **arguments):
            # While the alternative runs, its slot is held and the primary's is free again.
            admission = g.admit({"tenant": "x", "provider": "anthropic",
                                 "model": "claude-3-5-sonnet"}, token_estimate=1)
            seen.append(bool(admission))
            admission.cancel()
            primary_slot = g.admit({"tenant": "x", "provider": "openai", "model": "gpt-4o"},
                                   token_estimate=1)
            seen.append(bool(primary_slot))
            primary_slot.cancel()
            return super().__call__(**arguments)

    factory = Factory(claude=Recording(text="claude says hi"))
    call(g, base.FakeModel(fail=InvokeConnectionError("down")), fallbacks(factory))
    assert seen == [False, True]


def test_an_alternative_over_its_own_budget_ends_the_chain_with_a_refusal():
    g = governor(per_model_tokens=150)
    spent = g.admit({"tenant": "other", "provider": "anthropic", "model": "claude-3-5-sonnet"},
                    token_estimate=100)
    spent.settle(100)
    factory = Factory()
    primary_failure = InvokeRateLimitError("429")
    with pytest.raises(dify.ModelRateLimited) as refused:
        call(g, base.FakeModel(fail=primary_failure), fallbacks(factory))
    assert refused.value.rule == "claude-tokens"
    assert refused.value.__cause__ is primary_failure, "the provider failure it followed"
    assert factory.fakes[CLAUDE].calls == 0 and factory.fakes[MINI].calls == 0
    assert base.remaining(g) == 1000, "nothing charged"


def test_a_refused_primary_is_raised_at_once():
    g = governor(tokens=200)
    spent = g.admit({"tenant": "t1"}, token_estimate=150)
    spent.settle(150)
    factory = Factory()
    with pytest.raises(dify.ModelRateLimited):
        call(g, base.FakeModel(), fallbacks(factory))  # estimate 121 > the 50 left
    assert factory.built == []


@pytest.mark.parametrize("failure", [InvokeBadRequestError("context too long"),
                                     InvokeAuthorizationError("bad workspace key"),
                                     KeyError("a bug")])
def test_errors_that_must_not_fall_over_are_raised_at_once(failure):
    g = governor()
    factory = Factory()
    with pytest.raises(type(failure)) as raised:
        call(g, base.FakeModel(fail=failure), fallbacks(factory))
    assert raised.value is failure
    assert factory.built == [], "no alternative was even built"


def test_a_workspaces_wrong_credentials_never_open_the_shared_breaker():
    g = governor()
    chains = fallbacks(Factory(), breaker={"consecutive_failures": 1, "open_time": 30.0})
    for _ in range(3):
        with pytest.raises(InvokeAuthorizationError):
            call(g, base.FakeModel(fail=InvokeAuthorizationError("bad key")), chains)
    primary = chains.targets("openai", "gpt-4o")[0]
    assert primary["state"] == "closed" and primary["failures"] == 0
    assert call(g, base.FakeModel(), chains).message.content == "hello there"


def test_auth_may_fall_over_when_the_operator_says_so():
    g = governor()
    factory = Factory()
    chains = fallbacks(factory, actions={"auth": "next_target"})
    result = call(g, base.FakeModel(fail=InvokeAuthorizationError("revoked")), chains)
    assert result.message.content == "claude says hi"


def test_no_key_left_in_the_rotation_counts_as_a_rate_limit():
    g = governor()
    factory = Factory()

    class ProviderTokenNotInitError(ValueError):
        pass

    def no_key(**_):
        try:
            raise dify.NoKeyAvailable("every key cooling down")
        except dify.NoKeyAvailable as cause:
            raise ProviderTokenNotInitError("Model credentials is not initialized.") from cause

    assert call(g, no_key, fallbacks(factory)).message.content == "claude says hi"
    with pytest.raises(ProviderTokenNotInitError):  # not from the rotation: not a rate limit
        call(g, base.FakeModel(fail=ProviderTokenNotInitError("no credentials")),
             fallbacks(factory))


def test_a_model_without_a_chain_is_called_as_before():
    g = governor()
    factory = Factory()
    with pytest.raises(InvokeConnectionError):
        call(g, base.FakeModel(fail=InvokeConnectionError("down")), fallbacks(factory),
             model="gpt-4.1")
    assert factory.built == []


def test_a_plugin_provider_id_finds_the_chain_of_its_short_name():
    g = governor()
    factory = Factory()
    chains = fallbacks(factory)
    assert chains.chain("langgenius/openai/openai", "gpt-4o") == [PRIMARY, CLAUDE, MINI]
    result = call(g, base.FakeModel(fail=InvokeConnectionError("down")), chains,
                  provider="langgenius/openai/openai")
    assert result.message.content == "claude says hi"
    assert chains.chain("openai", "gpt-4o-mini") is None


def test_a_factory_that_fails_ends_the_chain_with_the_providers_failure(caplog):
    g = governor()
    primary_failure = InvokeConnectionError("down")

    def factory(tenant_id, provider, model):
        raise LookupError("workspace has no anthropic credentials")

    with caplog.at_level(logging.WARNING, logger="sluice.dify"):
        with pytest.raises(InvokeConnectionError) as raised:
            call(g, base.FakeModel(fail=primary_failure), fallbacks(factory))
    assert raised.value is primary_failure
    assert "no anthropic credentials" in caplog.text
    with pytest.raises(TypeError, match="model_factory must return a ModelInstance"):
        call(g, base.FakeModel(fail=InvokeConnectionError("down")),
             fallbacks(lambda *a: object()))


# ---- streams ----------------------------------------------------------------------------------
def test_a_stream_failing_before_its_first_chunk_falls_over():
    g = governor(concurrency=1, tokens=1000)
    factory = Factory(claude=base.FakeModel(text="one two three", prompt_tokens=20,
                                            completion_tokens=3))
    primary = base.FakeModel(text="a b", fail_after=0)  # raises before any chunk
    stream = call(g, primary, fallbacks(factory), stream=True)
    assert isinstance(stream, types.GeneratorType), "Dify tells streams by isinstance Generator"
    assert text_of(stream) == ["one", "two", "three"]
    assert primary.stream_closed
    assert base.remaining(g) == 1000 - 23
    call(g, base.FakeModel(), fallbacks(factory))  # every slot came back


def test_a_stream_failing_after_its_first_chunk_is_not_retried():
    g = governor(concurrency=1, tokens=1000)
    factory = Factory()
    chains = fallbacks(factory)
    primary = base.FakeModel(text="a b c", fail_after=1)
    stream = call(g, primary, chains, stream=True)
    assert next(stream).delta.message.content == "a"
    with pytest.raises(InvokeConnectionError, match="connection dropped"):
        next(stream)
    assert factory.built == [], "after the first chunk, no alternative is tried"
    assert base.remaining(g) < 1000, "output was produced: the estimate stays charged"
    primary_breaker = chains.targets("openai", "gpt-4o")[0]
    assert primary_breaker["failures"] == 1, "the breaker still learns of the failure"
    call(g, base.FakeModel(), chains)  # the slot came back


def test_a_stream_answered_by_the_primary_is_reported_as_a_success_when_it_ends():
    g = governor()
    chains = fallbacks(Factory())
    assert text_of(call(g, base.FakeModel(text="x y"), chains, stream=True)) == ["x", "y"]
    assert chains.targets("openai", "gpt-4o")[0]["successes"] == 1
    abandoned = call(g, base.FakeModel(text="x y"), chains, stream=True)
    next(abandoned)
    abandoned.close()  # the client went away: neither success nor failure
    assert chains.targets("openai", "gpt-4o")[0]["failures"] == 0


def test_an_empty_stream_is_an_answer():
    g = governor()
    chains = fallbacks(Factory())
    assert list(call(g, base.FakeModel(text=""), chains, stream=True)) == []


# ---- breakers ---------------------------------------------------------------------------------
def test_a_cached_answer_is_neither_a_success_nor_a_failure_of_the_provider():
    g = sluice.Governor(textwrap.dedent("""
        version: 1
        name: pytest-fallback-cache
        rules:
          - {name: tenant-tokens, match: {tenant: "*"}, key: [tenant], tokens: [1000/1h]}
        cache: {max_bytes: 1MiB, namespace: [tenant, app]}
    """), clock=sluice.ManualClock(0.0))
    chains = fallbacks(Factory())
    model = base.FakeModel()
    first = call(g, model, chains)
    assert call(g, model, chains) == first and model.calls == 1
    assert text_of(call(g, model, chains, stream=True)) == ["hello", "there"]
    assert text_of(call(g, model, chains, stream=True)) == ["hello", "there"]
    assert model.calls == 2
    assert chains.targets("openai", "gpt-4o")[0]["successes"] == 2, "only the two real calls"


def test_an_open_breaker_skips_the_dead_provider_without_a_call():
    g = governor(tokens=100_000)
    factory = Factory()
    clock = sluice.ManualClock(0.0)
    chains = fallbacks(factory, clock=clock,
                       breaker={"consecutive_failures": 2, "open_time": 30.0})
    dead = base.FakeModel(fail=InvokeServerUnavailableError("503"))
    for _ in range(2):
        assert call(g, dead, chains).message.content == "claude says hi"
    assert dead.calls == 2
    assert chains.targets("openai", "gpt-4o")[0]["state"] == "open"
    assert call(g, dead, chains).message.content == "claude says hi"
    assert dead.calls == 2, "the open breaker skipped the primary"
    assert factory.fakes[CLAUDE].calls == 3
    clock.advance(31.0)  # half open: the primary is probed again
    call(g, base.FakeModel(), chains)
    assert chains.targets("openai", "gpt-4o")[0]["state"] != "open"


def test_the_operator_may_retry_the_same_target_and_hear_of_breaker_transitions():
    g = governor(tokens=100_000)
    events = []
    chains = fallbacks(Factory(), max_retries_per_target=1, backoff_base=0.001,
                       backoff_max=0.001, on_breaker_transition=events.append,
                       breaker={"consecutive_failures": 2, "open_time": 30.0})
    flaky = base.FakeModel(fail=InvokeConnectionError("reset"))
    assert call(g, flaky, chains).message.content == "claude says hi"
    assert flaky.calls == 2, "one retry of the primary, then the alternative"
    assert [e["to"] for e in events] == ["open"]
    assert base.remaining(g) == 100_000 - 15, "both failed attempts gave their tokens back"


def test_every_breaker_open_raises_model_unavailable_with_a_retry_after():
    g = governor(tokens=100_000)
    factory = Factory(claude=base.FakeModel(fail=InvokeServerUnavailableError("503")))
    chains = fallbacks(factory, chain=[CLAUDE],
                       breaker={"consecutive_failures": 1, "open_time": 30.0})
    with pytest.raises(InvokeServerUnavailableError):
        call(g, base.FakeModel(fail=InvokeServerUnavailableError("503")), chains)
    primary = base.FakeModel()
    with pytest.raises(dify.ModelUnavailable) as raised:
        call(g, primary, chains)
    assert primary.calls == 0 and raised.value.retry_after > 0
    assert isinstance(raised.value, sluice.Unavailable)
    assert base.remaining(g, "t1") == 100_000, "nothing admitted, nothing charged"


def test_inside_a_dify_model_unavailable_is_difys_server_unavailable_error(monkeypatch):
    errors = types.ModuleType("core.model_runtime.errors.invoke")
    errors.InvokeServerUnavailableError = InvokeServerUnavailableError
    monkeypatch.setitem(sys.modules, "core.model_runtime.errors.invoke", errors)
    g = governor()
    chains = fallbacks(Factory(claude=base.FakeModel(fail=InvokeConnectionError("down"))),
                       chain=[CLAUDE], breaker={"consecutive_failures": 1, "open_time": 30.0})
    with pytest.raises(InvokeConnectionError):
        call(g, base.FakeModel(fail=InvokeConnectionError("down")), chains)
    with pytest.raises(InvokeServerUnavailableError) as raised:
        call(g, base.FakeModel(), chains)
    assert isinstance(raised.value, dify.ModelUnavailable)
    assert dify.classify_invoke_error(raised.value).kind == "server"


# ---- the patched ModelInstance.invoke_llm -----------------------------------------------------
def test_the_patch_falls_over_to_an_instance_invoked_through_difys_own_invoke_llm():
    g = governor()

    class ModelInstance:
        calls = []

        def __init__(self, provider, model, fail=None):
            self.provider_model_bundle = base.Bundle()
            self.provider, self.model, self.fail = provider, model, fail

        def invoke_llm(self, prompt_messages, model_parameters=None, tools=None, stop=None,
                       stream=True, user=None, callbacks=None):
            ModelInstance.calls.append((self.provider, self.model))
            if self.fail is not None:
                raise self.fail
            return base.FakeModel(text=f"{self.provider} answers")(
                prompt_messages=prompt_messages, model_parameters=model_parameters, tools=tools,
                stop=stop, stream=stream, user=user, callbacks=callbacks)

    chains = dify.ModelFallbacks({PRIMARY: [CLAUDE]},
                                 model_factory=lambda t, p, m: ModelInstance(p, m))
    # What install() does: the class's invoke_llm replaced, the original kept on the wrapper.
    ModelInstance.invoke_llm = dify.governed_method(ModelInstance.invoke_llm, g,
                                                    fallbacks=chains)
    primary = ModelInstance("openai", "gpt-4o", fail=InvokeRateLimitError("429"))
    result = primary.invoke_llm(base.MESSAGES, {"max_tokens": 5}, stream=False)
    assert result.message.content == "anthropic answers"
    assert ModelInstance.calls == [("openai", "gpt-4o"), ("anthropic", "claude-3-5-sonnet")], \
        "the alternative was invoked once, through the original (no second fallback)"


# ---- arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize("chains, error, message", [
    (None, TypeError, "chains must be a mapping"),
    ([(PRIMARY, [CLAUDE])], TypeError, "chains must be a mapping"),
    ({}, ValueError, "chains must name at least one primary"),
    ({"openai/gpt-4o": [CLAUDE]}, TypeError, "chains key must be a .provider, model. pair"),
    ({("openai", ""): [CLAUDE]}, ValueError, r"chains key\[1\] \(model\) must not be empty"),
    ({("openai", 4): [CLAUDE]}, TypeError, r"chains key\[1\] \(model\) must be a str"),
    ({PRIMARY: None}, TypeError, r"chains\[\('openai', 'gpt-4o'\)\] must be a list"),
    ({PRIMARY: "anthropic/claude"}, TypeError, r"chains\[\('openai', 'gpt-4o'\)\] must be a"),
    ({PRIMARY: []}, ValueError, "must list at least one alternative"),
    ({PRIMARY: [CLAUDE, None]}, TypeError, r"chains\[\('openai', 'gpt-4o'\)\]\[1\] must be a"),
    ({PRIMARY: [("anthropic",)]}, TypeError, r"\[0\] must be a .provider, model. pair"),
    ({PRIMARY: [CLAUDE, PRIMARY]}, ValueError, r"\[1\] names the primary .* again"),
    ({PRIMARY: [CLAUDE, MINI, list(CLAUDE)]}, ValueError, r"\[2\] names .*claude.* twice"),
    ({PRIMARY: [CLAUDE] * 64}, ValueError, "at most 63 alternatives"),
])
def test_hostile_chains_raise_errors_naming_the_bad_argument(chains, error, message):
    with pytest.raises(error, match=message):
        dify.ModelFallbacks(chains, model_factory=Factory())


def test_hostile_options_raise_errors_naming_them():
    with pytest.raises(TypeError, match="model_factory must be callable"):
        dify.ModelFallbacks({PRIMARY: [CLAUDE]}, model_factory="ModelManager")
    with pytest.raises(TypeError, match="unknown option 'max_retries' .the FallbackPolicy"):
        dify.ModelFallbacks({PRIMARY: [CLAUDE]}, max_retries=2)
    with pytest.raises(ValueError, match="deadline must be > 0"):
        dify.ModelFallbacks({PRIMARY: [CLAUDE]}, deadline=-1.0)
    with pytest.raises(TypeError, match="actions must be a mapping"):
        dify.ModelFallbacks({PRIMARY: [CLAUDE]}, actions=["auth"])
    with pytest.raises(Exception, match="auth"):
        dify.ModelFallbacks({PRIMARY: [CLAUDE]}, actions={"auth": "sometimes"})
    with pytest.raises(TypeError, match="fallbacks must be None, a sluice.dify.ModelFallbacks"):
        call(governor(), base.FakeModel(), ["openai"])
    with pytest.raises(TypeError, match="fallbacks must be None"):
        dify.governed_method(base.ModelInstance.invoke_llm, governor(), fallbacks=42)
    with pytest.raises(ValueError, match="fallbacks needs model_calls"):
        dify.install(fallbacks={PRIMARY: [CLAUDE]})


def test_chains_may_point_at_each_other():
    chains = dify.ModelFallbacks({PRIMARY: [CLAUDE], CLAUDE: [PRIMARY]},
                                 model_factory=Factory())
    assert chains.chain(*CLAUDE) == [CLAUDE, PRIMARY]
    g = governor()
    factory = Factory(claude=base.FakeModel(fail=InvokeConnectionError("claude down")))
    chains = dify.ModelFallbacks({PRIMARY: [CLAUDE], CLAUDE: [PRIMARY]}, model_factory=factory)
    with pytest.raises(InvokeConnectionError, match="claude down"):
        call(g, base.FakeModel(fail=InvokeConnectionError("openai down")), chains)
    assert factory.fakes[CLAUDE].calls == 1, "the alternative is not sent down its own chain"


# ---- install(fallbacks=...) in a Dify-shaped tree ----------------------------------------------
DIFY_MODEL_MODULES = {
    "core/model_runtime/__init__.py": "",
    "core/model_runtime/errors/__init__.py": "",
    "core/model_runtime/errors/invoke.py": """
        class InvokeError(ValueError):
            def __init__(self, description=None):
                super().__init__(description)
                self.description = description

        class InvokeRateLimitError(InvokeError):
            pass

        class InvokeServerUnavailableError(InvokeError):
            pass
    """,
    "core/model_runtime/entities/__init__.py": "",
    "core/model_runtime/entities/model_entities.py": """
        import enum

        class ModelType(enum.Enum):
            LLM = "llm"
            TEXT_EMBEDDING = "text-embedding"
    """,
    "core/model_manager.py": """
        from core.model_runtime.errors.invoke import InvokeServerUnavailableError

        class Usage:
            prompt_tokens, completion_tokens, total_tokens = 3, 2, 5

        class Result:
            def __init__(self, provider):
                self.usage, self.provider = Usage(), provider

        class ModelInstance:
            calls = []
            down = set()

            def __init__(self, tenant_id, provider, model):
                class Configuration:
                    pass
                class Bundle:
                    pass
                self.provider_model_bundle = Bundle()
                self.provider_model_bundle.configuration = Configuration()
                self.provider_model_bundle.configuration.tenant_id = tenant_id
                self.provider, self.model = provider, model

            def invoke_llm(self, prompt_messages, model_parameters=None, tools=None, stop=None,
                           stream=True, user=None, callbacks=None):
                ModelInstance.calls.append((self.provider, self.model))
                if self.provider in ModelInstance.down:
                    raise InvokeServerUnavailableError(self.provider + " is down")
                return Result(self.provider)

        class ModelManager:
            asked = []

            def get_model_instance(self, tenant_id, provider, model_type, model):
                ModelManager.asked.append((tenant_id, provider, model_type, model))
                return ModelInstance(tenant_id, provider, model)
    """,
}


@pytest.fixture
def fake_dify(tmp_path):
    import dify_support
    with dify_support.fake_dify_tree(tmp_path) as make:
        yield make(DIFY_MODEL_MODULES)


def test_install_with_fallbacks_builds_alternatives_with_difys_model_manager(fake_dify):
    import dify_support
    from core.model_manager import ModelInstance, ModelManager
    from core.model_runtime.entities.model_entities import ModelType
    from core.model_runtime.errors.invoke import InvokeServerUnavailableError as DifyUnavailable
    original = ModelInstance.invoke_llm
    g = governor()
    dify.install(dify.policy("process", name=dify_support.unique_name("fallback")),
                 attempt_scope="process", model_calls=g, fallbacks={PRIMARY: [CLAUDE]})
    ModelInstance.down = {"openai"}
    result = ModelInstance("tenant-1", *PRIMARY).invoke_llm(base.MESSAGES, stream=False)
    assert result.provider == "anthropic"
    assert ModelManager.asked == [("tenant-1", "anthropic", ModelType.LLM, "claude-3-5-sonnet")]
    assert ModelInstance.calls == [PRIMARY, CLAUDE]
    ModelInstance.down = {"openai", "anthropic"}
    with pytest.raises(DifyUnavailable, match="anthropic is down"):
        ModelInstance("tenant-1", *PRIMARY).invoke_llm(base.MESSAGES, stream=False)
    assert dify.uninstall()
    assert ModelInstance.invoke_llm is original


# ---- with sluice's key rotation ----------------------------------------------------------------
class LBConfig:
    """Dify's ModelLoadBalancingConfiguration: id, name, credentials."""

    def __init__(self, config_id):
        self.id, self.name, self.credentials = config_id, config_id, {"api_key": config_id}


def test_after_every_key_is_rate_limited_the_call_falls_over_and_then_skips_the_rotation():
    previous = dify.configure_key_rotation("process", clock=sluice.ManualClock(0.0))
    try:
        manager = dify.LBModelManager("t1", "openai", "llm", "gpt-4o",
                                      [LBConfig("key-1"), LBConfig("key-2")])
        keys_tried = []

        def primary(**arguments):
            def with_key(config):
                keys_tried.append(config.id)
                raise InvokeRateLimitError(f"429 on {config.id}")
            return dify.invoke_with_key_rotation(manager, with_key, stream=arguments["stream"])

        g = governor()
        factory = Factory()
        chains = fallbacks(factory)
        assert call(g, primary, chains).message.content == "claude says hi"
        assert sorted(keys_tried) == ["key-1", "key-2"], "the rotation tried every key first"
        assert call(g, primary, chains).message.content == "claude says hi"
        assert len(keys_tried) == 2, "every key cooling down: NoKeyAvailable, no provider call"
        assert factory.fakes[CLAUDE].calls == 2
        assert base.remaining(g) == 1000 - 2 * 15
    finally:
        dify.configure_key_rotation(**previous)


def test_no_key_left_gives_the_reservation_back_without_a_chain_too():
    g = governor()

    def no_key(**_):
        raise dify.NoKeyAvailable("every key cooling down")

    with pytest.raises(dify.NoKeyAvailable):
        call(g, no_key, None)
    assert base.remaining(g) == 1000, "no provider was called: nothing was spent"
