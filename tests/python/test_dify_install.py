"""sluice.dify.install against Dify-shaped package trees of our own: it patches the modules it
knows, copies of the names included, refuses a Dify with a missing symbol (naming the version
and the symbol) without patching anything, and uninstall puts Dify's classes back."""

from __future__ import annotations


import pytest

import sluice
import sluice.dify as dify

import dify_support


@pytest.fixture
def fake_dify(tmp_path):
    with dify_support.fake_dify_tree(tmp_path) as make:
        yield make


def process_policy():
    return dify.policy("process", name=dify_support.unique_name("install"))


def test_install_swaps_difys_classes_and_uninstall_restores_them(fake_dify):
    fake_dify(version="1.14.2")
    import core.app.features.rate_limiting as package
    import core.app.features.rate_limiting.rate_limit as module
    import libs.helper as helper
    import services.app_generate_service as service
    originals = (module.RateLimit, module.RateLimitGenerator, module.rate_limit_context,
                 helper.RateLimiter)

    assert dify.install(process_policy(), attempt_scope="process") == "1.14.2"
    assert dify.installed()
    assert module.RateLimit is dify.RateLimit and package.RateLimit is dify.RateLimit
    assert service.RateLimit is dify.RateLimit, "a copy made by from-import is patched too"
    assert module.RateLimitGenerator is dify.RateLimitGenerator
    assert module.rate_limit_context is dify.rate_limit_context
    assert helper.RateLimiter is dify.AttemptLimiter and service.RateLimiter is dify.AttemptLimiter

    with pytest.raises(sluice.FailedPrecondition, match="already installed"):
        dify.install(process_policy())

    assert dify.uninstall()
    assert (module.RateLimit, module.RateLimitGenerator, module.rate_limit_context,
            helper.RateLimiter) == originals
    assert service.RateLimit is originals[0] and package.RateLimit is originals[0]
    assert not dify.uninstall()


def test_inside_dify_the_refusal_is_difys_own_exception_class(fake_dify):
    fake_dify()
    from core.errors.error import AppInvokeQuotaExceededError as DifysError
    from core.app.features.rate_limiting.rate_limit import RateLimit as before
    dify.install(process_policy(), attempt_scope="process")
    from core.app.features.rate_limiting.rate_limit import RateLimit
    assert RateLimit is not before
    limit = RateLimit("app-in-dify", 1)
    limit.enter()
    with pytest.raises(DifysError) as refused:
        limit.enter()
    assert "allowed for app-in-dify is 1." in str(refused.value)
    assert refused.value.max_active_requests == 1 and refused.value.headers
    dify.uninstall()
    dify_support.forget_fake_dify()     # outside a Dify: sluice.dify's own class
    limit = dify.RateLimit("app-in-dify-2", 1)
    limit.enter()
    with pytest.raises(dify.AppInvokeQuotaExceededError) as refused:
        limit.enter()
    assert type(refused.value) is dify.AppInvokeQuotaExceededError


@pytest.mark.parametrize("omit, named", [
    (["core.app.features.rate_limiting.rate_limit.RateLimit"],
     "core.app.features.rate_limiting.rate_limit.RateLimit"),
    (["libs.helper.RateLimiter"], "libs.helper.RateLimiter"),
    (["core.errors.error.AppInvokeQuotaExceededError"],
     "core.errors.error.AppInvokeQuotaExceededError"),
])
def test_a_dify_with_a_missing_symbol_is_refused_by_name_and_nothing_is_patched(fake_dify, omit,
                                                                                 named):
    fake_dify(version="0.9.9", omit=omit)
    import libs.helper as helper
    before = getattr(helper, "RateLimiter", None)
    with pytest.raises(dify.DifyNotSupported) as refused:
        dify.install(process_policy(), attempt_scope="process")
    message = str(refused.value)
    assert "Dify 0.9.9 is not supported" in message and named in message
    assert refused.value.version == "0.9.9" and refused.value.missing[0].startswith(named)
    assert not dify.installed()
    assert getattr(helper, "RateLimiter", None) is before


def test_an_optional_symbol_may_be_missing(fake_dify):
    fake_dify(omit=["core.app.features.rate_limiting.rate_limit.rate_limit_context"])
    dify.install(process_policy(), attempt_scope="process")
    import core.app.features.rate_limiting.rate_limit as module
    assert module.RateLimit is dify.RateLimit and not hasattr(module, "rate_limit_context")


def test_no_dify_at_all_names_the_module_and_an_explicit_version(fake_dify):
    dify_support.forget_fake_dify()
    with pytest.raises(dify.DifyNotSupported) as refused:
        dify.install(process_policy(), dify_version="1.13.3")
    assert "Dify 1.13.3 is not supported" in str(refused.value)
    assert "(no module core.app.features.rate_limiting.rate_limit)" in str(refused.value)


def test_version_unknown_when_dify_does_not_say(fake_dify):
    root = fake_dify(omit=["libs.helper.RateLimiter"])
    (root / "configs" / "__init__.py").write_text("dify_config = None\n")
    with pytest.raises(dify.DifyNotSupported, match="Dify unknown is not supported"):
        dify.install(process_policy())


def test_install_arguments_are_checked(fake_dify, monkeypatch):
    fake_dify()
    with pytest.raises(TypeError, match="governor_or_policy must be"):
        dify.install(42)
    with pytest.raises(TypeError, match="dify_version must be a str"):
        dify.install(process_policy(), dify_version=1.0)
    with pytest.raises(ValueError, match="attempt_scope must be"):
        dify.install(process_policy(), attempt_scope="galaxy")
    # Cluster scope without a store takes Dify's REDIS_* settings (configs.dify_config),
    # naming a bad one.
    import configs
    monkeypatch.setattr(configs.dify_config, "REDIS_USE_CLUSTERS", True, raising=False)
    with pytest.raises(ValueError, match="REDIS_CLUSTERS must be set"):
        dify.install(process_policy(), attempt_scope="cluster")
    monkeypatch.delattr(configs.dify_config, "REDIS_USE_CLUSTERS")
    with pytest.raises(sluice.InvalidArgument, match="rule must name a rule"):
        dify.install(sluice.Governor("version: 1\nrules:\n  - {name: other, concurrency: 1}\n"))
    assert not dify.installed()


def test_host_scope_install_makes_attempt_limiters_share_a_region(fake_dify):
    fake_dify()
    name = dify_support.unique_name("hostinstall")
    try:
        dify.install(dify.policy("host", name=name, ceiling=8, max_apps=16))
        dify.configure_attempt_limiters("host", name=name)
        from libs.helper import RateLimiter
        first = RateLimiter("login", 1, 60)
        second = RateLimiter("login", 1, 60)
        first.increment_rate_limit("ip")
        assert second.is_rate_limited("ip"), "two limiters, one host-wide log"
    finally:
        dify.uninstall()
        dify_support.remove_regions(name)


def test_every_public_name_is_documented_and_ships_in_the_package():
    import inspect
    import os
    assert os.path.exists(os.path.join(os.path.dirname(sluice.__file__), "py.typed"))
    assert os.path.dirname(dify.__file__) == os.path.join(os.path.dirname(sluice.__file__),
                                                          "dify")
    for name in dify.__all__:
        value = getattr(dify, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"sluice.dify.{name} has no docstring"
            for member, attribute in vars(value).items():
                if inspect.isfunction(attribute) and not member.startswith("_"):
                    assert inspect.getdoc(attribute), f"sluice.dify.{name}.{member}: no docstring"
