"""RedisStore's Sentinel, Cluster and TLS keywords and RedisStore.from_url (issue 18).

A store is created without connecting, so these run without a Redis; what reached the C++
options is seen through the checks RedisStore makes (sluice/redis_store.h). The connection logic
of Sentinel, Cluster and TLS is not exercised here.
"""

from __future__ import annotations

import pytest

import sluice

SECRET = "Hunter2Secret"


@pytest.mark.parametrize("url", [
    "redis://localhost",
    "redis://:pw@10.0.0.5:6380/2?command_timeout=10ms&key_prefix=app",
    "rediss://app:p%40ss@redis.example.com/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=none",
    "unix:///run/redis/redis.sock?db=1",
    "redis+sentinel://:pw@s1:26379,s2,[fd00::3]/mymaster/0?sentinel_password=t",
    "rediss+cluster://:pw@n1:7000,n2:7001",
])
def test_from_url_accepts_every_form(url):
    assert isinstance(sluice.RedisStore.from_url(url), sluice.RedisStore)


def test_from_url_overrides_win_over_the_url():
    # The URL's cluster has db 0; an override of db is then refused by the store's own check,
    # which shows that the override reached the options and the URL's topology too.
    with pytest.raises(sluice.InvalidArgument, match="db must be 0 with cluster_nodes"):
        sluice.RedisStore.from_url("redis+cluster://n1:7000", db=3)
    # rediss turned TLS on with a CA file; tls=False wins, and the CA file is then an error.
    with pytest.raises(sluice.InvalidArgument, match="tls.ca_file is set but tls.enabled is false"):
        sluice.RedisStore.from_url("rediss://h?ssl_ca_certs=/ca.pem", tls=False)
    sluice.RedisStore.from_url("rediss://h?ssl_ca_certs=/ca.pem", tls_ca_file=None, tls=False)
    with pytest.raises(sluice.InvalidArgument, match="sentinels need sentinel_master"):
        sluice.RedisStore.from_url("redis+sentinel://s1/m", sentinel_master=None)


@pytest.mark.parametrize("url, part", [
    (f"redis://:{SECRET}@h:abc/0", "port 'abc' in 'redis://:***@h:abc/0'"),
    (f"redis://app:{SECRET}@h/x", "db 'x'"),
    (f"redis://{SECRET}@h", "the userinfo in 'redis://***@h' has no ':'"),
    (f"redis+sentinel://s1/m?sentinel_password={SECRET}&bogus=1", "option 'bogus'"),
    (f"redis+cluster://:{SECRET}@n1/5", "path '/5'"),
])
def test_from_url_errors_name_the_part_and_never_the_password(url, part):
    with pytest.raises(sluice.InvalidArgument) as error:
        sluice.RedisStore.from_url(url)
    assert part in str(error.value)
    assert SECRET not in str(error.value)


@pytest.mark.parametrize("overrides, message", [
    ({"bogus": 1}, "unknown keyword 'bogus'"),
    ({"db": "x"}, "db must be an int"),
    ({"port": 2**40}, "port must be an int that fits in 32 bits"),
    ({"tls": "yes"}, "tls must be a bool"),
    ({"command_timeout": "soon"}, "command_timeout must be a number of seconds"),
    ({"password": 5}, "password must be a str or None"),
])
def test_from_url_bad_override_names_it_and_never_the_password(overrides, message):
    with pytest.raises(TypeError) as error:
        sluice.RedisStore.from_url(f"redis://:{SECRET}@h", **overrides)
    assert message in str(error.value)
    assert SECRET not in str(error.value)


def test_sentinels_and_cluster_nodes_take_strings_and_tuples():
    sluice.RedisStore(sentinel_master="m", sentinels=["s1:26379", ("s2", 26380), "[::1]"])
    sluice.RedisStore(sentinel_master="m", sentinels="s1,s2:26380")
    sluice.RedisStore(cluster_nodes=[("n1", 7000), "n2"], tls=True, tls_server_name="r.example")
    with pytest.raises(sluice.InvalidArgument, match=r"cluster_nodes\[1\] port must be 1..65535"):
        sluice.RedisStore(cluster_nodes=[("n1", 7000), ("n2", 0)])
    with pytest.raises(sluice.InvalidArgument, match=r"sentinels\[0\]: .*port 'x'"):
        sluice.RedisStore(sentinel_master="m", sentinels=["s1:x"])
    with pytest.raises(TypeError, match=r"cluster_nodes\[0\] must be 'host:port' or a"):
        sluice.RedisStore(cluster_nodes=[7000])
    with pytest.raises(TypeError, match="sentinels must be a list"):
        sluice.RedisStore(sentinel_master="m", sentinels={"s1": 1})


def test_tls_keywords_reach_the_options():
    with pytest.raises(sluice.InvalidArgument, match="tls.ca_file is set but tls.enabled is false"):
        sluice.RedisStore(tls_ca_file="/ca.pem")
    with pytest.raises(sluice.InvalidArgument, match="tls.verify_peer is false"):
        sluice.RedisStore(tls_verify_peer=False)
    with pytest.raises(sluice.InvalidArgument, match="tls.cert_file and tls.key_file"):
        sluice.RedisStore(tls=True, tls_cert_file="/c.pem")
    sluice.RedisStore(tls=True, tls_cert_file="/c.pem", tls_key_file="/k.pem", tls_verify_peer=False)
    with pytest.raises(sluice.InvalidArgument, match="sentinel_username needs a sentinel_password"):
        sluice.RedisStore(sentinel_master="m", sentinels=["s"], sentinel_username="w")


@pytest.mark.parametrize("call, named", [
    (lambda: sluice.RedisStore(password="s3cret-pw", db="bad"), "db must be an int"),
    (lambda: sluice.RedisStore("h", "6379", password="s3cret-pw"), "port must be an int"),
    (lambda: sluice.RedisStore(password="s3cret-pw", tls="yes"), "tls must be a bool"),
    (lambda: sluice.RedisStore(password="s3cret-pw", command_timeout="1"),
     "command_timeout must be a number of seconds"),
    (lambda: sluice.RedisStore(password="s3cret-pw", sentinel_password=3),
     "sentinel_password must be a str or None"),
    (lambda: sluice.RedisStore(password="s3cret-pw", nope=1), "unknown keyword 'nope'"),
    (lambda: sluice.RedisStore("h", 1, 2, password="s3cret-pw"), "3 positional arguments"),
    (lambda: sluice.RedisStore.from_url(None, password="s3cret-pw"), "url must be a str"),
    (lambda: sluice.RedisStore.from_url(url=3, password="s3cret-pw"), "url must be a str"),
    (lambda: sluice.RedisStore.from_url(password="s3cret-pw"), "url is required"),
])
def test_a_wrong_type_is_named_and_no_password_shown(call, named):
    """pybind11's own TypeError lists every argument's value: a password given beside a wrong
    type ended up in logs. The message names the argument and shows no value."""
    with pytest.raises(TypeError) as raised:
        call()
    message = str(raised.value)
    assert "s3cret-pw" not in message
    assert named in message
