"""install(key_rotation=...) against a Dify-shaped tree of our own: Dify's LBModelManager (and the
console service's from-import copy) becomes sluice.dify's, ModelInstance._round_robin_invoke
fails over on a stream's 429 before its first chunk, all keys cooling is Dify's
ProviderTokenNotInitError, and uninstall restores Dify's classes and the previous settings."""

from __future__ import annotations

import time

import pytest

import sluice
import sluice.dify as dify

import dify_support

EXTRA_MODULES = {
    "core/model_runtime/__init__.py": "",
    "core/model_runtime/errors/__init__.py": "",
    "core/model_runtime/errors/invoke.py": """
        class InvokeError(ValueError):
            pass

        class InvokeRateLimitError(InvokeError):
            pass
    """,
    # Dify's shapes, our own minimal code: a manager keeping cooldowns in a dict, an instance
    # whose invoke_llm goes through _round_robin_invoke(function=..., credentials=..., ...).
    "core/model_manager.py": """
        class LBModelManager:
            cooldowns = {}

            def __init__(self, tenant_id, provider, model_type, model, load_balancing_configs,
                         managed_credentials=None):
                self.configs = list(load_balancing_configs)

            def fetch_next(self):
                return self.configs[0]

            def cooldown(self, config, expire=60):
                LBModelManager.cooldowns[config.id] = expire

            @staticmethod
            def get_config_in_cooldown_and_ttl(tenant_id, provider, model_type, model, config_id):
                return (config_id in LBModelManager.cooldowns,
                        LBModelManager.cooldowns.get(config_id, 0))

        class ModelInstance:
            def __init__(self, configs, runtime):
                self.provider, self.model = "openai", "gpt-4o"
                self.credentials = {"api_key": "sk-provider"}
                self.model_type_instance = runtime
                self.load_balancing_manager = (
                    LBModelManager("tenant-1", "openai", "llm", "gpt-4o", configs)
                    if configs else None)

            def invoke_llm(self, prompt_messages, model_parameters=None, tools=None, stop=None,
                           stream=True, user=None, callbacks=None):
                return self._round_robin_invoke(
                    function=self.model_type_instance.invoke, model=self.model,
                    credentials=self.credentials, prompt_messages=prompt_messages,
                    model_parameters=model_parameters, stream=stream)

            def _round_robin_invoke(self, function, *args, **kwargs):
                if not self.load_balancing_manager:
                    return function(*args, **kwargs)
                kwargs["credentials"] = self.load_balancing_manager.fetch_next().credentials
                return function(*args, **kwargs)
    """,
    "services/model_load_balancing_service.py": """
        from core.model_manager import LBModelManager

        def cooldown_of(config_id):
            return LBModelManager.get_config_in_cooldown_and_ttl(
                "tenant-1", "openai", "llm", "gpt-4o", config_id)
    """,
}


class Config:
    def __init__(self, id):
        self.id, self.name, self.credentials = id, f"key {id}", {"api_key": f"sk-{id}"}


class Runtime:
    """The model runtime: the n-th invoke follows `script` (an exception raised before any
    output, or a list of chunks streamed)."""

    def __init__(self, *script):
        self.script = list(script)
        self.keys = []

    def invoke(self, model, credentials, prompt_messages, model_parameters=None, stream=True):
        self.keys.append(credentials["api_key"])
        step = self.script[len(self.keys) - 1]

        def chunks():
            if isinstance(step, BaseException):
                raise step  # a provider 429 arrives when the stream is first read
            yield from step
        return chunks() if stream else step


@pytest.fixture
def fake_dify(tmp_path):
    with dify_support.fake_dify_tree(tmp_path) as make:
        root = make(EXTRA_MODULES)
        with open(root / "core" / "errors" / "error.py", "a") as f:
            f.write("\n\nclass ProviderTokenNotInitError(ValueError):\n    pass\n")
        previous = dify.configure_key_rotation("process", clock=sluice.ManualClock(0.0))
        try:
            yield root
        finally:
            dify.uninstall()  # before the key rotation it may have swapped in is reset
            dify.configure_key_rotation(**previous)


def process_policy():
    return dify.policy("process", name=dify_support.unique_name("install-keys"))


def test_key_rotation_replaces_difys_manager_and_round_robin(fake_dify):
    import core.model_manager as model_manager
    import services.model_load_balancing_service as console
    from core.errors.error import ProviderTokenNotInitError
    from core.model_manager import ModelInstance
    from core.model_runtime.errors.invoke import InvokeRateLimitError
    originals = (model_manager.LBModelManager, ModelInstance._round_robin_invoke)

    dify.install(process_policy(), attempt_scope="process", key_rotation="process")
    assert model_manager.LBModelManager is dify.LBModelManager
    assert console.LBModelManager is dify.LBModelManager, "the console's copy is patched too"
    assert dify.key_rotation_settings()["scope"] == "process"

    runtime = Runtime(InvokeRateLimitError("429"), ["a", "b"])
    instance = ModelInstance([Config("k1"), Config("k2")], runtime)
    assert isinstance(instance.load_balancing_manager, dify.LBModelManager)
    assert list(instance.invoke_llm([], stream=True)) == ["a", "b"]
    failed, served = runtime.keys
    assert failed != served, "a stream's 429 before its first chunk moved to the next key"
    assert console.cooldown_of(failed[len("sk-"):]) == (True, 60)
    assert console.cooldown_of(served[len("sk-"):]) == (False, 0)

    with pytest.raises(InvokeRateLimitError):  # the other key fails too: Dify's last error
        ModelInstance([Config("k1"), Config("k2")],
                      Runtime(InvokeRateLimitError("again"))).invoke_llm([], stream=True)
    with pytest.raises(ProviderTokenNotInitError) as none_left:
        ModelInstance([Config("k1"), Config("k2")], Runtime()).invoke_llm([], stream=False)
    assert isinstance(none_left.value.__cause__, dify.NoKeyAvailable)

    plain = Runtime({"text": "no load balancing"})
    assert ModelInstance([], plain).invoke_llm([], stream=False) == {"text": "no load balancing"}
    assert plain.keys == ["sk-provider"], "without a manager, Dify's own path"

    assert dify.uninstall()
    assert (model_manager.LBModelManager, ModelInstance._round_robin_invoke) == originals
    assert console.LBModelManager is originals[0]


def test_key_rotation_is_optional_and_needs_difys_symbols(fake_dify):
    import core.model_manager as model_manager
    original = model_manager.LBModelManager
    dify.install(process_policy(), attempt_scope="process")
    assert model_manager.LBModelManager is original, "not asked: Dify's own manager stays"
    dify.uninstall()

    with pytest.raises(ValueError, match="key_rotation must be None, process, host or cluster"):
        dify.install(process_policy(), attempt_scope="process", key_rotation="fleet")
    assert not dify.installed()

    (fake_dify / "core" / "model_manager.py").write_text(
        "class ModelInstance:\n    def _round_robin_invoke(self, function):\n        pass\n")
    dify_support.forget_fake_dify()
    with pytest.raises(dify.DifyNotSupported, match="missing core.model_manager.LBModelManager"):
        dify.install(process_policy(), attempt_scope="process", key_rotation="process")
    assert not dify.installed()

    (fake_dify / "core" / "model_manager.py").write_text(
        "class ModelInstance:\n    pass\n\nclass LBModelManager:\n    pass\n")
    dify_support.forget_fake_dify()
    with pytest.raises(dify.DifyNotSupported,
                       match="missing core.model_manager.ModelInstance._round_robin_invoke"):
        dify.install(process_policy(), attempt_scope="process", key_rotation="process")
    assert not dify.installed()
    import core.model_manager as reloaded
    assert reloaded.LBModelManager is not dify.LBModelManager, "nothing was left patched"


def test_key_rotation_in_cluster_scope_shares_cooldowns_through_redis(fake_dify, redis_server,
                                                                     region):
    """install(key_rotation="cluster", redis=store): the console call of another "host" reading
    the same Redis sees a 429's cooldown."""
    from core.model_manager import ModelInstance
    from core.model_runtime.errors.invoke import InvokeRateLimitError
    store = sluice.RedisStore(port=redis_server.port, command_timeout=2.0)
    previous = dify.key_rotation_settings()
    dify.configure_key_rotation("host", region_prefix=region)
    try:
        dify.install(process_policy(), attempt_scope="process", key_rotation="cluster",
                     redis=store)
        settings = dify.key_rotation_settings()
        assert settings["scope"] == "cluster" and settings["redis"] is store
        runtime = Runtime(InvokeRateLimitError("429"), ["a"])
        assert list(ModelInstance([Config("k1"), Config("k2")], runtime).invoke_llm(
            [], stream=True)) == ["a"]
        failed = runtime.keys[0][len("sk-"):]
        store.check()  # the cooldown, sent before this, is in Redis
        assert dify.uninstall()
        assert dify.key_rotation_settings()["scope"] == "host"
        # another host: its own region, the same Redis
        dify.configure_key_rotation("cluster", region_prefix=region + "-2", redis=store,
                                    redis_refresh=0.01)
        def cooldown_of(config_id):  # what sluice's console call answers on that host
            return dify.LBModelManager.get_config_in_cooldown_and_ttl(
                "tenant-1", "openai", "llm", "gpt-4o", config_id)

        deadline = time.monotonic() + 10
        while cooldown_of(failed) == (False, 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        cooling, seconds = cooldown_of(failed)
        assert cooling and 50 <= seconds <= 60
    finally:
        dify.uninstall()
        dify.configure_key_rotation(**previous)
        for made in (region + "-2", region + "-2.endpoints"):
            try:
                sluice.remove_shared_region(made)
            except sluice.NotFound:
                pass
