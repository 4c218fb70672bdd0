"""sluice.dify's model-call wrapper (governed_invoke_llm and the ModelInstance.invoke_llm patch)
against Dify-shaped fakes of our own: pydantic LLMResult / LLMResultChunk / LLMUsage and prompt
messages with Dify's field names. Time is a ManualClock; nothing sleeps."""

from __future__ import annotations

import enum
import json
import sys
import textwrap
import types
from typing import List, Optional, Union

import pytest

import sluice
import sluice.dify as dify
from dify_support import InvokeConnectionError, InvokeError, InvokeRateLimitError

pydantic = pytest.importorskip("pydantic")
from pydantic import BaseModel  # noqa: E402


# ---- Dify-shaped fakes ------------------------------------------------------------------------
class PromptMessageRole(str, enum.Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class TextContent(BaseModel):
    type: str = "text"
    data: str


class ImageContent(BaseModel):
    type: str = "image"
    data: str = ""
    url: str = ""


class PromptMessage(BaseModel):
    role: PromptMessageRole
    content: Union[str, List[Union[TextContent, ImageContent]], None] = None
    name: Optional[str] = None


class LLMUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: PromptMessageRole = PromptMessageRole.ASSISTANT
    content: str = ""


class LLMResult(BaseModel):
    model: str
    message: AssistantMessage
    usage: LLMUsage


class LLMResultChunkDelta(BaseModel):
    index: int
    message: AssistantMessage
    usage: Optional[LLMUsage] = None
    finish_reason: Optional[str] = None


class LLMResultChunk(BaseModel):
    model: str
    delta: LLMResultChunkDelta


def usage(prompt, completion):
    return LLMUsage(prompt_tokens=prompt, completion_tokens=completion,
                    total_tokens=prompt + completion)


class FakeModel:
    """A provider: records calls; answers a blocking result or a stream of chunks."""

    def __init__(self, text="hello there", prompt_tokens=10, completion_tokens=5, fail=None,
                 fail_after=None):
        self.calls = 0
        self.text, self.prompt, self.completion = text, prompt_tokens, completion_tokens
        self.fail, self.fail_after = fail, fail_after
        self.stream_closed = False

    def __call__(self, *, prompt_messages, model_parameters, tools, stop, stream, user, callbacks):
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        if not stream:
            return LLMResult(model="m", message=AssistantMessage(content=self.text),
                             usage=usage(self.prompt, self.completion))
        return self._chunks()

    def _chunks(self):
        words = self.text.split()
        try:
            for i, word in enumerate(words):
                if self.fail_after is not None and i == self.fail_after:
                    raise InvokeConnectionError("connection dropped")
                last = i == len(words) - 1
                yield LLMResultChunk(model="m", delta=LLMResultChunkDelta(
                    index=i, message=AssistantMessage(content=word),
                    usage=usage(self.prompt, self.completion) if last else None,
                    finish_reason="stop" if last else None))
        finally:
            self.stream_closed = True


MESSAGES = [PromptMessage(role=PromptMessageRole.SYSTEM, content="You are terse."),
            PromptMessage(role=PromptMessageRole.USER, content="hello, how are you today?")]


def governor(extra_rules="", cache=False, tokens=1000, concurrency=0):
    text = f"""
    version: 1
    name: pytest-invoke
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
    if cache:
        text += """
    cache: {max_bytes: 1MiB, namespace: [tenant, app]}
    """
    return sluice.Governor(textwrap.dedent(text), clock=sluice.ManualClock(0.0))


def invoke(g, model, *, stream=False, tenant="t1", app="a1", parameters=None,
           messages=MESSAGES, **extra):
    return dify.governed_invoke_llm(g, model, tenant_id=tenant, app_id=app, provider="openai",
                                    model="gpt-4o", prompt_messages=messages,
                                    model_parameters=parameters or {"max_tokens": 100},
                                    stream=stream, user="end-user-1", **extra)


def remaining(g, tenant="t1"):
    admission = g.admit({"tenant": tenant}, token_estimate=1)
    left = admission.decision.remaining
    admission.cancel()
    return left + 1  # the probe's own token


# ---- blocking ---------------------------------------------------------------------------------
def test_a_blocking_call_reserves_the_estimate_and_settles_with_llm_usage():
    g = governor(tokens=1000)
    model = FakeModel(prompt_tokens=30, completion_tokens=12)
    result = invoke(g, model)
    assert isinstance(result, LLMResult) and result.message.content == "hello there"
    assert remaining(g) == 1000 - 42, "settled with prompt + completion, not the estimate"


def test_the_estimate_counts_prompt_and_max_tokens_and_refuses_before_the_provider():
    g = governor(tokens=500)
    invoke(g, FakeModel(prompt_tokens=400, completion_tokens=50))  # 50 tokens left
    model = FakeModel()
    with pytest.raises(dify.ModelRateLimited) as refused:
        invoke(g, model, parameters={"max_tokens": 100})
    assert model.calls == 0, "refused before the provider is called"
    error = refused.value
    assert error.rule == "tenant-tokens" and error.dify_code == "rate_limit_error"
    assert "openai/gpt-4o" in error.description and error.retry_after > 0
    assert any(n == "Retry-After" for n, _ in error.headers())
    body, estimate = dify._invoke.request_body(
        provider="openai", model="gpt-4o", app_id="a1", prompt_messages=MESSAGES,
        model_parameters={"max_tokens": 100}, tools=None, stop=None, stream=False)
    assert estimate == sluice.estimate_prompt_tokens(body) + 100
    assert json.loads(body)["messages"][1] == {"role": "user",
                                              "content": "hello, how are you today?"}
    assert remaining(g) == 50, "a refusal charges nothing"
    with pytest.raises(ValueError, match="exceeds windows.0..burst 500, so it could never"):
        invoke(g, model, parameters={"max_tokens": 600})  # bigger than the whole budget
    assert model.calls == 0


def test_images_in_dify_content_count_as_images():
    with_image = [PromptMessage(role=PromptMessageRole.USER, content=[
        TextContent(data="what is this?"), ImageContent(url="https://x/cat.png")])]
    text_only = [PromptMessage(role=PromptMessageRole.USER, content=[
        TextContent(data="what is this?")])]
    args = dict(provider="p", model="m", app_id=None, model_parameters=None, tools=None,
                stop=None, stream=False)
    _, image_estimate = dify._invoke.request_body(prompt_messages=with_image, **args)
    _, text_estimate = dify._invoke.request_body(prompt_messages=text_only, **args)
    assert image_estimate - text_estimate >= 500, "an image is hundreds of tokens"


def test_a_dify_invoke_error_gives_the_tokens_back_and_is_classified():
    g = governor(tokens=1000)
    model = FakeModel(fail=InvokeRateLimitError("provider 429"))
    with pytest.raises(InvokeRateLimitError) as raised:
        invoke(g, model)
    assert raised.value.sluice_failure.kind == "rate_limited"
    assert raised.value.sluice_failure.cooldown == 60.0
    assert remaining(g) == 1000, "the provider refused: nothing was spent"
    bug = FakeModel(fail=KeyError("bug"))
    with pytest.raises(KeyError):
        invoke(g, bug)
    assert remaining(g) < 1000, "an unknown failure keeps its estimate charged"


def test_concurrency_slot_is_released_after_blocking_calls_and_errors():
    g = governor(concurrency=1)
    for fail in (None, InvokeConnectionError("down"), RuntimeError("bug")):
        try:
            invoke(g, FakeModel(fail=fail))
        except Exception:
            pass
    invoke(g, FakeModel())  # would be refused if any earlier call kept its slot


def test_argument_errors_name_the_argument():
    g = governor()
    with pytest.raises(TypeError, match="governor must be a sluice.Governor"):
        dify.governed_invoke_llm(object(), FakeModel(), tenant_id="t", provider="p", model="m",
                                 prompt_messages=[])
    with pytest.raises(TypeError, match="tenant_id must be a non-empty str"):
        dify.governed_invoke_llm(g, FakeModel(), tenant_id="", provider="p", model="m",
                                 prompt_messages=[])
    with pytest.raises(TypeError, match="prompt_messages must be a list"):
        dify.governed_invoke_llm(g, FakeModel(), tenant_id="t", provider="p", model="m",
                                 prompt_messages="hello")
    with pytest.raises(TypeError, match="model_parameters must be a mapping"):
        dify.governed_invoke_llm(g, FakeModel(), tenant_id="t", provider="p", model="m",
                                 prompt_messages=[], model_parameters=[1])


def test_a_prompt_json_cannot_hold_is_estimated_and_never_cached():
    g = governor(cache=True)
    odd = [PromptMessage(role=PromptMessageRole.USER, content="lone \ud800 surrogate")]
    model = FakeModel()
    for _ in range(2):
        invoke(g, model, messages=odd)
    assert model.calls == 2


# ---- the cache --------------------------------------------------------------------------------
def test_the_cache_serves_a_repeated_call_namespaced_by_tenant_and_app():
    g = governor(cache=True)
    model = FakeModel(prompt_tokens=30, completion_tokens=12)
    first = invoke(g, model)
    second = invoke(g, model)
    assert model.calls == 1 and second == first and isinstance(second, LLMResult)
    assert remaining(g) == 1000 - 42, "a hit gives its reservation back"
    invoke(g, model, app="a2")
    invoke(g, model, tenant="t2")
    assert model.calls == 3, "another app or tenant never sees the answer"
    invoke(g, model, parameters={"max_tokens": 100, "temperature": 0.1})
    assert model.calls == 4, "other parameters, another key"


def test_a_completed_stream_is_cached_and_replayed_as_chunks():
    g = governor(cache=True)
    model = FakeModel(text="one two three")
    first = [c.delta.message.content for c in invoke(g, model, stream=True)]
    replay = list(invoke(g, model, stream=True))
    assert model.calls == 1
    assert [c.delta.message.content for c in replay] == first == ["one", "two", "three"]
    assert all(isinstance(c, LLMResultChunk) for c in replay)
    blocking = invoke(g, model, stream=False)
    assert isinstance(blocking, LLMResult) and model.calls == 2, "blocking is cached apart"


def test_an_unfinished_stream_is_not_cached():
    g = governor(cache=True)
    model = FakeModel(text="one two three")
    stream = invoke(g, model, stream=True)
    next(stream)
    stream.close()
    list(invoke(g, model, stream=True))
    assert model.calls == 2


# ---- streams ----------------------------------------------------------------------------------
def test_a_stream_holds_its_slot_until_it_ends_and_settles_from_the_last_chunk():
    g = governor(concurrency=1, tokens=1000)
    model = FakeModel(text="a b c", prompt_tokens=20, completion_tokens=3)
    stream = invoke(g, model, stream=True)
    assert isinstance(stream, types.GeneratorType), "Dify tells streams by isinstance Generator"
    next(stream)
    with pytest.raises(dify.ModelRateLimited):
        invoke(g, FakeModel())
    assert len(list(stream)) == 2
    assert remaining(g) == 1000 - 23
    invoke(g, FakeModel())  # the slot came back


def test_a_closed_stream_releases_its_slot_and_closes_the_provider():
    g = governor(concurrency=1, tokens=1000)
    model = FakeModel(text="a b c")
    stream = invoke(g, model, stream=True)
    next(stream)
    stream.close()  # the client went away
    assert model.stream_closed
    invoke(g, FakeModel())
    assert remaining(g) < 1000, "usage unknown: the estimate stays charged"
    never_read = invoke(g, FakeModel(text="x y"), stream=True)
    never_read.close()
    del never_read
    invoke(g, FakeModel())


def test_a_stream_that_fails_mid_way_releases_and_keeps_its_estimate():
    g = governor(concurrency=1, tokens=1000)
    stream = invoke(g, FakeModel(text="a b c", fail_after=1), stream=True)
    next(stream)
    with pytest.raises(InvokeConnectionError) as raised:
        list(stream)
    assert raised.value.sluice_failure.kind == "connect"
    assert remaining(g) < 1000, "output was produced: the estimate stays charged"
    invoke(g, FakeModel())


def test_a_stream_that_fails_before_its_first_chunk_gives_the_tokens_back():
    g = governor(tokens=1000)
    with pytest.raises(InvokeConnectionError):
        list(invoke(g, FakeModel(text="a b", fail_after=0), stream=True))
    assert remaining(g) == 1000


# ---- inside a Dify ------------------------------------------------------------------------------
@pytest.fixture
def fake_dify_modules(monkeypatch):
    """Dify's invoke error module and a ModelInstance, as sys.modules entries."""
    errors = types.ModuleType("core.model_runtime.errors.invoke")
    errors.InvokeError, errors.InvokeRateLimitError = InvokeError, InvokeRateLimitError
    monkeypatch.setitem(sys.modules, "core.model_runtime.errors.invoke", errors)
    return errors


def test_inside_a_dify_the_refusal_is_difys_invoke_rate_limit_error(fake_dify_modules):
    g = governor(tokens=200)
    invoke(g, FakeModel(prompt_tokens=150, completion_tokens=40))
    with pytest.raises(InvokeRateLimitError) as refused:
        invoke(g, FakeModel(), parameters={"max_tokens": 100})
    error = refused.value
    assert isinstance(error, dify.ModelRateLimited) and isinstance(error, sluice.RateLimited)
    assert error.description.startswith("Rate limited by rule 'tenant-tokens'")
    assert dify.is_refusal(error)
    data = dify.stream_error_data(error)
    assert (data["code"], data["status"]) == ("rate_limit_error", 429) and data["retry_after"] >= 1
    assert dify.stream_error_data(InvokeRateLimitError("the provider's own 429")) is None


class Configuration:
    tenant_id = "tenant-9"


class Bundle:
    configuration = Configuration()


class ModelInstance:
    """Dify's ModelInstance, as far as the patch reads it."""

    def __init__(self, model: FakeModel):
        self.provider_model_bundle = Bundle()
        self.provider = "openai"
        self.model = "gpt-4o"
        self.fake = model

    def invoke_llm(self, prompt_messages, model_parameters=None, tools=None, stop=None,
                   stream=True, user=None, callbacks=None):
        return self.fake(prompt_messages=prompt_messages, model_parameters=model_parameters,
                         tools=tools, stop=stop, stream=stream, user=user, callbacks=callbacks)


def test_the_patched_invoke_llm_reads_tenant_provider_model_and_the_scopes_app():
    g = sluice.Governor(textwrap.dedent("""
        version: 1
        name: pytest-invoke-patch
        rules:
          - name: per-app
            match: {tenant: tenant-9, provider: openai, model: gpt-4o, app: app-1,
                    end_user: user-7}
            key: [app]
            requests: [1/1m]
    """), clock=sluice.ManualClock(0.0))
    patched = dify.governed_method(ModelInstance.invoke_llm, g)
    instance = ModelInstance(FakeModel())
    with dify.model_call_scope(app_id="app-1"):
        patched(instance, MESSAGES, {"max_tokens": 5}, stream=False, user="user-7")
        with pytest.raises(dify.ModelRateLimited):
            patched(instance, MESSAGES, {"max_tokens": 5}, stream=False, user="user-7")
    patched(instance, MESSAGES, stream=False, user="user-7")  # no app: the rule does not match
    assert patched.__sluice_original__ is ModelInstance.invoke_llm


def test_a_stream_bigger_than_the_bound_is_not_cached(monkeypatch):
    monkeypatch.setattr(dify._invoke, "MAX_CACHED_STREAM_BYTES", 200)
    g = governor(cache=True)
    model = FakeModel(text="one two three four five")
    for _ in range(2):
        assert len(list(invoke(g, model, stream=True))) == 5
    assert model.calls == 2
