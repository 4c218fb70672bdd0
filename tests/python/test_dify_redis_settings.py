"""sluice.dify.redis_store_from_dify: Dify's REDIS_* settings (api/extensions/ext_redis.py) as a
sluice.RedisStore, from a fake `dify_config` object or an environment mapping (issue 18)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import sluice
from sluice import dify

SECRET = "Hunter2Secret"


def test_standalone_from_environment_strings():
    env = {"REDIS_HOST": "redis", "REDIS_PORT": "6380", "REDIS_USERNAME": "app",
           "REDIS_PASSWORD": SECRET, "REDIS_DB": "3", "REDIS_USE_SSL": "false"}
    assert dify.redis_store_keywords(env) == {"host": "redis", "port": 6380, "username": "app",
                                              "password": SECRET, "db": 3}
    assert isinstance(dify.redis_store_from_dify(env, key_prefix="dify"), sluice.RedisStore)


def test_empty_settings_are_unset():
    assert dify.redis_store_keywords({"REDIS_PASSWORD": "", "REDIS_HOST": " "}) == {
        "username": None, "password": None}


def test_sentinel_from_a_settings_object():
    config = SimpleNamespace(REDIS_USE_SENTINEL=True, REDIS_SENTINELS="s1:26379, s2:26380",
                             REDIS_SENTINEL_SERVICE_NAME="mymaster", REDIS_SENTINEL_USERNAME="w",
                             REDIS_SENTINEL_PASSWORD="t", REDIS_PASSWORD=SECRET, REDIS_DB=2,
                             REDIS_HOST="ignored", REDIS_PORT=1)
    keywords = dify.redis_store_keywords(config)
    assert keywords == {"username": None, "password": SECRET, "db": 2,
                        "sentinel_master": "mymaster", "sentinels": ["s1:26379", "s2:26380"],
                        "sentinel_username": "w", "sentinel_password": "t"}
    dify.redis_store_from_dify(config)


def test_cluster_takes_the_clusters_password_only():
    config = SimpleNamespace(REDIS_USE_CLUSTERS="true", REDIS_CLUSTERS="n1:7000,n2:7001",
                             REDIS_CLUSTERS_PASSWORD="cp", REDIS_PASSWORD="other", REDIS_DB=5,
                             REDIS_USERNAME="u")
    assert dify.redis_store_keywords(config) == {"cluster_nodes": ["n1:7000", "n2:7001"],
                                                 "password": "cp"}
    dify.redis_store_from_dify(config)


@pytest.mark.parametrize("reqs, verify", [("CERT_NONE", False), ("CERT_OPTIONAL", True),
                                          ("CERT_REQUIRED", True), ("required", True)])
def test_tls_settings(reqs, verify):
    env = {"REDIS_USE_SSL": "True", "REDIS_SSL_CA_CERTS": "/ca.pem", "REDIS_SSL_CERTFILE": "/c.pem",
           "REDIS_SSL_KEYFILE": "/k.pem", "REDIS_SSL_CERT_REQS": reqs}
    keywords = dify.redis_store_keywords(env)
    assert (keywords["tls"], keywords["tls_ca_file"], keywords["tls_cert_file"],
            keywords["tls_key_file"], keywords["tls_verify_peer"]) == (
        True, "/ca.pem", "/c.pem", "/k.pem", verify)
    dify.redis_store_from_dify(env)


def test_tls_files_without_use_ssl_are_not_read():
    # Dify ignores them without REDIS_USE_SSL; so does sluice (its own check would refuse them).
    assert "tls_ca_file" not in dify.redis_store_keywords({"REDIS_SSL_CA_CERTS": "/ca.pem"})


@pytest.mark.parametrize("settings, message", [
    ({"REDIS_PORT": "abc"}, "REDIS_PORT must be a whole number, got 'abc'"),
    ({"REDIS_DB": "1.5"}, "REDIS_DB must be a whole number"),
    ({"REDIS_USE_SSL": "maybe"}, "REDIS_USE_SSL must be true or false, got 'maybe'"),
    ({"REDIS_USE_SENTINEL": "1", "REDIS_SENTINEL_SERVICE_NAME": "m"}, "REDIS_SENTINELS must be set"),
    ({"REDIS_USE_SENTINEL": "1", "REDIS_SENTINELS": "s:1"}, "REDIS_SENTINEL_SERVICE_NAME must be set"),
    ({"REDIS_USE_CLUSTERS": "1"}, "REDIS_CLUSTERS must be set"),
    ({"REDIS_USE_CLUSTERS": "1", "REDIS_USE_SENTINEL": "1"}, "choose one"),
    ({"REDIS_USE_SSL": "1", "REDIS_SSL_CERT_REQS": "sometimes"}, "REDIS_SSL_CERT_REQS must be"),
])
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        dify.redis_store_keywords({**settings, "REDIS_PASSWORD": SECRET})


def test_bad_values_reach_the_store_check_without_the_password():
    with pytest.raises(sluice.InvalidArgument) as error:
        dify.redis_store_from_dify({"REDIS_USE_CLUSTERS": "1", "REDIS_CLUSTERS": "n1:0",
                                    "REDIS_CLUSTERS_PASSWORD": SECRET})
    assert "cluster_nodes[0]" in str(error.value) and SECRET not in str(error.value)
    with pytest.raises(TypeError, match="REDIS_HOST must be a str"):
        dify.redis_store_keywords(SimpleNamespace(REDIS_HOST=5))


def test_the_environment_is_read_when_dify_is_absent(monkeypatch):
    monkeypatch.setenv("REDIS_HOST", "from-env")
    monkeypatch.setenv("REDIS_PORT", "6390")
    keywords = dify.redis_store_keywords()
    assert (keywords["host"], keywords["port"]) == ("from-env", 6390)
