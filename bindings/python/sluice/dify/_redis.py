"""A sluice.RedisStore from Dify's own Redis settings (issue 18).

Dify configures its Redis client from `dify_config` (api/configs, read from `.env`) in
api/extensions/ext_redis.py: standalone (REDIS_HOST, REDIS_PORT), Sentinel (REDIS_USE_SENTINEL,
REDIS_SENTINELS "h:p,h:p", REDIS_SENTINEL_SERVICE_NAME, the sentinels' own REDIS_SENTINEL_USERNAME
and REDIS_SENTINEL_PASSWORD, the data nodes' REDIS_USERNAME / REDIS_PASSWORD / REDIS_DB), Redis
Cluster (REDIS_USE_CLUSTERS, REDIS_CLUSTERS "h:p,h:p", REDIS_CLUSTERS_PASSWORD, db 0) and TLS
(REDIS_USE_SSL with REDIS_SSL_CA_CERTS, REDIS_SSL_CERTFILE, REDIS_SSL_KEYFILE and
REDIS_SSL_CERT_REQS, Python's ssl.CERT_* names). The same names mean the same here, so that
sluice's cluster scope reaches the Redis Dify itself uses. Table: docs/dify.md, "Scope".
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

_WHO = "sluice.dify.redis_store_from_dify"

# Every setting read, for errors and docs/dify.md.
SETTINGS = (
    "REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB", "REDIS_USE_SSL",
    "REDIS_SSL_CA_CERTS", "REDIS_SSL_CERTFILE", "REDIS_SSL_KEYFILE", "REDIS_SSL_CERT_REQS",
    "REDIS_USE_SENTINEL", "REDIS_SENTINELS", "REDIS_SENTINEL_SERVICE_NAME",
    "REDIS_SENTINEL_USERNAME", "REDIS_SENTINEL_PASSWORD", "REDIS_USE_CLUSTERS", "REDIS_CLUSTERS",
    "REDIS_CLUSTERS_PASSWORD",
)


def _dify_config() -> Any:
    """Dify's settings object when running inside Dify's api/, else the environment."""
    try:
        from configs import dify_config  # type: ignore[import-not-found]
        return dify_config
    except Exception:  # noqa: BLE001 - not inside Dify (or its settings fail to load)
        return os.environ


class _Settings:
    def __init__(self, source: Any) -> None:
        self._source = source

    def raw(self, name: str) -> Any:
        if isinstance(self._source, Mapping):
            value = self._source.get(name)
        else:
            value = getattr(self._source, name, None)
        return None if isinstance(value, str) and value.strip() == "" else value

    def text(self, name: str) -> Optional[str]:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"{_WHO}: {name} must be a str, got {type(value).__name__}")
        return value

    def whole(self, name: str) -> Optional[int]:
        value = self.raw(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip(), 10)
            except ValueError:
                pass
        shown = repr(value) if isinstance(value, str) and len(value) <= 40 else type(value).__name__
        raise ValueError(f"{_WHO}: {name} must be a whole number, got {shown}")

    def flag(self, name: str) -> bool:
        # pydantic-settings (Dify's) reads true/false, 1/0, yes/no, on/off.
        value = self.raw(name)
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "t", "y"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off", "f", "n"):
            return False
        shown = repr(value) if isinstance(value, str) and len(value) <= 40 else type(value).__name__
        raise ValueError(f"{_WHO}: {name} must be true or false, got {shown}")

    def nodes(self, name: str) -> list:
        value = self.text(name)
        if value is None:
            raise ValueError(f"{_WHO}: {name} must be set (host:port,host:port)")
        return [part.strip() for part in value.split(",")]


def redis_store_keywords(settings: Any = None) -> Dict[str, Any]:
    """The keyword arguments of sluice.RedisStore that Dify's Redis settings mean.

    `settings`: an object with Dify's attribute names (`dify_config`), a mapping (`os.environ`,
    a dict), or None: Dify's `configs.dify_config` when importable, else `os.environ`.
    Raises ValueError / TypeError naming the setting (never showing a password).
    """
    s = _Settings(_dify_config() if settings is None else settings)
    keywords: Dict[str, Any] = {}
    use_sentinel = s.flag("REDIS_USE_SENTINEL")
    use_clusters = s.flag("REDIS_USE_CLUSTERS")
    if use_sentinel and use_clusters:
        raise ValueError(f"{_WHO}: REDIS_USE_SENTINEL and REDIS_USE_CLUSTERS are both true: "
                         "choose one (Dify itself takes Sentinel)")
    if use_clusters:
        # Dify's cluster client takes REDIS_CLUSTERS_PASSWORD only: no user, db 0.
        keywords["cluster_nodes"] = s.nodes("REDIS_CLUSTERS")
        keywords["password"] = s.text("REDIS_CLUSTERS_PASSWORD")
    else:
        keywords["username"] = s.text("REDIS_USERNAME")
        keywords["password"] = s.text("REDIS_PASSWORD")
        db = s.whole("REDIS_DB")
        if db is not None:
            keywords["db"] = db
        if use_sentinel:
            service = s.text("REDIS_SENTINEL_SERVICE_NAME")
            if service is None:
                raise ValueError(f"{_WHO}: REDIS_SENTINEL_SERVICE_NAME must be set with "
                                 "REDIS_USE_SENTINEL")
            keywords["sentinel_master"] = service
            keywords["sentinels"] = s.nodes("REDIS_SENTINELS")
            keywords["sentinel_username"] = s.text("REDIS_SENTINEL_USERNAME")
            keywords["sentinel_password"] = s.text("REDIS_SENTINEL_PASSWORD")
        else:
            host = s.text("REDIS_HOST")
            port = s.whole("REDIS_PORT")
            if host is not None:
                keywords["host"] = host
            if port is not None:
                keywords["port"] = port
    if s.flag("REDIS_USE_SSL"):
        keywords["tls"] = True
        keywords["tls_ca_file"] = s.text("REDIS_SSL_CA_CERTS")
        keywords["tls_cert_file"] = s.text("REDIS_SSL_CERTFILE")
        keywords["tls_key_file"] = s.text("REDIS_SSL_KEYFILE")
        reqs = s.text("REDIS_SSL_CERT_REQS")
        if reqs is not None:
            # Python's ssl: a client's CERT_OPTIONAL verifies as CERT_REQUIRED does.
            names = {"cert_none": False, "none": False, "cert_optional": True, "optional": True,
                     "cert_required": True, "required": True}
            if reqs.strip().lower() not in names:
                raise ValueError(f"{_WHO}: REDIS_SSL_CERT_REQS must be CERT_NONE, CERT_OPTIONAL "
                                 f"or CERT_REQUIRED, got {reqs[:40]!r}")
            keywords["tls_verify_peer"] = names[reqs.strip().lower()]
    return keywords


def redis_store_from_dify(settings: Any = None, **overrides: Any) -> Any:
    """A sluice.RedisStore on the Redis Dify uses: standalone, Sentinel or Redis Cluster, with
    TLS, as Dify's REDIS_* settings say (see redis_store_keywords). `overrides` are
    sluice.RedisStore keywords (key_prefix, command_timeout, ...) and win over the settings."""
    from .. import RedisStore
    keywords = redis_store_keywords(settings)
    keywords.update(overrides)
    return RedisStore(**keywords)


def policy_store_fields(settings: Any = None) -> Dict[str, Any]:
    """The fields of a policy's Redis store (docs/policy.md, "Stores") that Dify's Redis settings
    mean: what `sluice.dify.policy("cluster")` uses when it is given no `redis_url`."""
    keywords = redis_store_keywords(settings)
    fields: Dict[str, Any] = {}
    for name in ("host", "port", "username", "password", "db", "sentinel_master", "sentinels",
                 "sentinel_username", "sentinel_password", "cluster_nodes"):
        if keywords.get(name) is not None:
            fields[name] = keywords[name]
    if keywords.get("tls"):
        tls: Dict[str, Any] = {}
        for keyword, field in (("tls_ca_file", "ca_file"), ("tls_cert_file", "cert_file"),
                               ("tls_key_file", "key_file"), ("tls_verify_peer", "verify_peer")):
            if keywords.get(keyword) is not None:
                tls[field] = keywords[keyword]
        fields["tls"] = tls or True
    return fields
