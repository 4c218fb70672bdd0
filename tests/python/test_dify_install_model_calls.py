"""install(model_calls=governor) against a Dify-shaped tree of our own: ModelInstance.invoke_llm
goes through the Governor, a refusal is Dify's InvokeRateLimitError, Dify's stream converter
reports it as a 429 event (other errors keep Dify's 400s), and uninstall restores both."""

from __future__ import annotations

import textwrap

import pytest

import sluice
import sluice.dify as dify

import dify_support

EXTRA_MODULES = {
    "core/model_runtime/__init__.py": "",
    "core/model_runtime/errors/__init__.py": "",
    "core/model_runtime/errors/invoke.py": """
        class InvokeError(ValueError):
            def __init__(self, description=None):
                super().__init__(description)
                self.description = description

        class InvokeRateLimitError(InvokeError):
            pass
    """,
    "core/model_manager.py": """
        class Usage:
            prompt_tokens, completion_tokens, total_tokens = 3, 2, 5

        class Result:
            usage = Usage()

        class ModelInstance:
            calls = 0

            def __init__(self, tenant_id):
                class Configuration:
                    pass
                class Bundle:
                    pass
                self.provider_model_bundle = Bundle()
                self.provider_model_bundle.configuration = Configuration()
                self.provider_model_bundle.configuration.tenant_id = tenant_id
                self.provider, self.model = "openai", "gpt-4o"

            def invoke_llm(self, prompt_messages, model_parameters=None, tools=None, stop=None,
                           stream=True, user=None, callbacks=None):
                ModelInstance.calls += 1
                return Result()
    """,
    "core/app/apps/__init__.py": "",
    "core/app/apps/base_app_generate_response_converter.py": """
        from core.model_runtime.errors.invoke import InvokeError

        class AppGenerateResponseConverter:
            @classmethod
            def _error_to_stream_response(cls, e):
                if isinstance(e, InvokeError):
                    return {"code": "completion_request_error", "status": 400,
                            "message": str(e)}
                return {"code": "internal_server_error", "status": 500}
    """,
}

POLICY = """
version: 1
name: pytest-install-model-calls
rules:
  - name: tenant-calls
    match: {tenant: "*", model: gpt-4o}
    key: [tenant]
    requests: [1/1m]
"""


@pytest.fixture
def fake_dify(tmp_path):
    with dify_support.fake_dify_tree(tmp_path) as make:
        yield make(EXTRA_MODULES)


def process_policy():
    return dify.policy("process", name=dify_support.unique_name("install-model"))


def test_model_calls_go_through_the_governor_and_refusals_are_429_stream_events(fake_dify):
    from core.app.apps.base_app_generate_response_converter import AppGenerateResponseConverter
    from core.model_manager import ModelInstance
    from core.model_runtime.errors.invoke import InvokeError, InvokeRateLimitError
    original = ModelInstance.invoke_llm
    g = sluice.Governor(textwrap.dedent(POLICY), clock=sluice.ManualClock(0.0))
    dify.install(process_policy(), attempt_scope="process", model_calls=g)

    instance = ModelInstance("tenant-1")
    instance.invoke_llm([], stream=False)
    with pytest.raises(InvokeRateLimitError) as refused:
        instance.invoke_llm([], stream=False)
    assert ModelInstance.calls == 1, "the refused call never reached the provider"
    ModelInstance("tenant-2").invoke_llm([], stream=False)  # its own key

    event = AppGenerateResponseConverter._error_to_stream_response(refused.value)
    assert (event["code"], event["status"]) == ("rate_limit_error", 429)
    assert event["retry_after"] >= 1
    assert AppGenerateResponseConverter._error_to_stream_response(
        InvokeRateLimitError("the provider's own"))["status"] == 400, "not ours: Dify's answer"
    assert AppGenerateResponseConverter._error_to_stream_response(KeyError())["status"] == 500

    assert dify.uninstall()
    assert ModelInstance.invoke_llm is original
    assert AppGenerateResponseConverter._error_to_stream_response(
        refused.value)["status"] == 400, "Dify's converter is back"
    assert isinstance(refused.value, InvokeError)


def test_model_calls_need_a_model_instance_and_a_governor(fake_dify):
    (fake_dify / "core" / "model_manager.py").write_text("class Other:\n    pass\n")
    g = sluice.Governor(textwrap.dedent(POLICY))
    with pytest.raises(dify.DifyNotSupported, match="missing core.model_manager.ModelInstance"):
        dify.install(process_policy(), attempt_scope="process", model_calls=g)
    assert not dify.installed()
    with pytest.raises(TypeError, match="model_calls must be a sluice.Governor"):
        dify.install(process_policy(), attempt_scope="process", model_calls="policy text")
    dify.install(process_policy(), attempt_scope="process")  # without model_calls: optional
    assert dify.installed()
