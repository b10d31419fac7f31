"""How every Kafka client of the project connects: TLS, SASL/SCRAM, bounded timeouts.

One model, :class:`KafkaSecurity`, holds the connection's security settings. The Kafka sink's
config (``sinks.kafka`` in the pipeline config) *is* a ``KafkaSecurity`` with producer and
spool settings added, so the keys are written once, flat, in that section::

    sinks:
      kafka:
        bootstrap_servers: ["kafka-1.internal:9094"]
        security_protocol: SASL_SSL          # TLS + SASL
        sasl_mechanism: SCRAM-SHA-512
        sasl_plain_username: qa
        sasl_plain_password: ${KAFKA_PASSWORD}   # from the environment, never in the file
        ssl_cafile: /etc/qa/kafka-ca.pem     # the CA that signed the brokers' certificates

Every other client (the dashboard's feed, ``rescore --kafka``, the stage workers) reads the
same section of the same file (``--config``) and builds its consumer or producer with
:meth:`KafkaSecurity.client_kwargs`. The password is a ``SecretStr``: it is unwrapped only
into the kafka-python arguments, never into a repr or a log line.

Secure by default: a broker that is not on this machine (not a loopback address or
``localhost``) is refused unless ``security_protocol`` is written down. ``SASL_SSL`` is the
setting to write; ``PLAINTEXT`` must be said explicitly to send in clear.

This module imports nothing of the project: every layer may use it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .errors import QAError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]

#: the arguments :meth:`KafkaSecurity.client_kwargs` may return (a consumer's and a
#: producer's alike)
CLIENT_KEYS = (
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
)


class KafkaSecurityError(QAError, ValueError):
    """Settings that would connect insecurely or cannot work (a config error)."""


def split_servers(servers: str | Iterable[str]) -> list[str]:
    """``"a:9092, b:9092"`` or a list of them → ``["a:9092", "b:9092"]``."""
    items = servers.split(",") if isinstance(servers, str) else servers
    return [s.strip() for s in items if s and s.strip()]


def host_of(server: str) -> str:
    """The host part of ``host:port`` (``[::1]:9092`` → ``::1``)."""
    s = server.strip()
    if s.startswith("["):
        return s[1:].partition("]")[0]
    if s.count(":") == 1:
        return s.rpartition(":")[0]
    return s


def is_local(server: str) -> bool:
    """True when ``server`` is on this machine: ``localhost`` or a loopback address."""
    host = host_of(server).lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class KafkaSecurity(BaseModel):
    """TLS and SASL settings of a Kafka connection (kafka-python's names).

    ``security_protocol`` left out means PLAINTEXT, allowed only towards brokers on this
    machine (:meth:`check_servers`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="SASL_SSL for TLS + SASL/SCRAM; PLAINTEXT must be written explicitly for "
        "a broker that is not on this machine",
    )
    sasl_mechanism: SaslMechanism | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = Field(
        default=None, description="from the environment: write ${NAME} (e.g. ${KAFKA_PASSWORD})"
    )
    ssl_cafile: str | None = Field(
        default=None, description="PEM file of the CA(s) that signed the brokers' certificates"
    )
    ssl_certfile: str | None = Field(default=None, description="client certificate (mTLS)")
    ssl_keyfile: str | None = Field(
        default=None, description="client key (mTLS), unless ssl_certfile holds it too"
    )
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _consistent_security(self) -> KafkaSecurity:
        if self.security_protocol.startswith("SASL_") and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        if self.sasl_mechanism is not None and not self.security_protocol.startswith("SASL_"):
            raise ValueError(
                f"sasl_mechanism {self.sasl_mechanism} needs security_protocol SASL_SSL "
                f"(or SASL_PLAINTEXT), not {self.security_protocol}"
            )
        if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and (
            not self.sasl_plain_username or self.sasl_plain_password is None
        ):
            raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs username and password")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("ssl_keyfile needs ssl_certfile (the client certificate)")
        return self

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def protocol_stated(self) -> bool:
        """Whether ``security_protocol`` was written (not the PLAINTEXT default)."""
        return "security_protocol" in self.model_fields_set

    def security(self) -> KafkaSecurity:
        """Only the security settings (a sink config is a ``KafkaSecurity`` with more)."""
        keys = set(KafkaSecurity.model_fields) & self.model_fields_set  # keeps "not written"
        return KafkaSecurity.model_validate({k: getattr(self, k) for k in keys})

    def check_servers(self, servers: Iterable[str]) -> None:
        """Refuse to talk in clear to a broker that is not on this machine unless
        ``security_protocol`` was written down (raises :class:`KafkaSecurityError`)."""
        if self.protocol_stated:
            return
        remote = [s for s in servers if not is_local(s)]
        if remote:
            raise KafkaSecurityError(
                f"Kafka broker {', '.join(remote)} is not on this machine and no "
                "security_protocol is set (sinks.kafka of the pipeline config, which "
                "dashboard and rescore read with --config): use security_protocol: SASL_SSL with "
                "sasl_mechanism: SCRAM-SHA-512, sasl_plain_username, sasl_plain_password: "
                "${KAFKA_PASSWORD} and ssl_cafile (deploy/README.md, 'Transport security'), "
                "or write security_protocol: PLAINTEXT to send in clear"
            )

    def client_kwargs(self) -> dict[str, Any]:
        """kafka-python arguments for any client (consumer, producer, admin); the password is
        unwrapped here only."""
        kw: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_plain_username
            if self.sasl_plain_password is not None:
                kw["sasl_plain_password"] = self.sasl_plain_password.get_secret_value()
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                kw[name] = getattr(self, name)
        if self.tls:
            kw["ssl_check_hostname"] = self.ssl_check_hostname
        return kw

    def describe(self) -> str:
        """A log-safe summary: ``SASL_SSL SCRAM-SHA-512 user qa`` (never the password)."""
        parts: list[str] = [self.security_protocol]
        if self.sasl_mechanism:
            parts += [self.sasl_mechanism, f"user {self.sasl_plain_username}"]
        return " ".join(parts)


#: kafka-python's log text → what an operator should look at
_CAUSES: tuple[tuple[str, str, bool], ...] = (
    # (text in kafka-python's error, explanation, a settings problem rather than an outage)
    ("SaslAuthenticationFailed", "SASL authentication refused: wrong user name or password?", True),
    ("UnsupportedSaslMechanism", "the broker does not offer this sasl_mechanism", True),
    (
        "CERTIFICATE_VERIFY_FAILED",
        "the broker's TLS certificate is not trusted or does not name this host "
        "(ssl_cafile: the CA that signed it?)",
        True,
    ),
    (
        "WRONG_VERSION_NUMBER",
        "this client speaks TLS but the listener does not (security_protocol? the port?)",
        True,
    ),
    (
        "Invalid frame length",
        "the listener speaks TLS and this client does not (security_protocol: SASL_SSL?)",
        True,
    ),
)


class KafkaConnectError(QAError, RuntimeError):
    """A Kafka client could not bootstrap: the message names the broker, the settings used
    (never the password) and the likely cause; ``settings`` is True when the cause is a
    setting (credentials, TLS) that no retry will fix."""

    def __init__(self, message: str, settings: bool) -> None:
        super().__init__(message)
        self.settings = settings


class _Diagnosis(logging.Handler):
    """Collects kafka-python's error lines while one client bootstraps (its exception only
    says "Unable to bootstrap"; the reason is in its log). Levels are left as they are: a
    ``kafka`` logger silenced by level leaves the cause unknown and the message falls back
    to hints (quiet kafka-python at a handler instead, as ``replay`` does)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < 50:
            with contextlib.suppress(Exception):  # a malformed record: not ours to fix
                self.lines.append(record.getMessage())

    def __enter__(self) -> _Diagnosis:
        logging.getLogger("kafka").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("kafka").removeHandler(self)

    def cause(self) -> tuple[str, bool] | None:
        for needle, why, settings in _CAUSES:
            if any(needle in line for line in self.lines):
                return why, settings
        return None


def connection_error(
    servers: Iterable[str],
    security: KafkaSecurity,
    exc: BaseException,
    cause: tuple[str, bool] | None = None,
) -> str:
    """One line for an operator: which broker, with which settings, and the likely cause."""
    where = ", ".join(servers)
    name = type(exc).__name__
    text = str(exc) or name
    if cause is not None:
        hint = cause[0]
    elif "Authentication" in name:
        hint = "wrong user name or password?"
    else:
        hint = (
            "broker down or unreachable, or its listener speaks another security_protocol "
            "(TLS or not) than this client"
        )
    return f"Kafka at {where} ({security.describe()}): {hint} [{name}: {text}]"


class _PasswordMask(logging.Filter):
    """kafka-python's admin client logs its whole configuration at DEBUG, the SASL password
    in it: the passwords given to :func:`connect` are masked in that logger's records."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            try:
                text = record.getMessage()
            except Exception:  # a malformed record: leave it to logging
                return True
            masked = text
            for secret in self.secrets:
                masked = masked.replace(secret, "**********")
            if masked != text:
                record.msg, record.args = masked, ()
        return True


_MASK = _PasswordMask()
#: kafka-python loggers known to print a client's configuration
_CONFIG_LOGGERS = ("kafka.admin.client",)
for _name in _CONFIG_LOGGERS:
    logging.getLogger(_name).addFilter(_MASK)


C = TypeVar("C")


def connect(
    factory: Callable[..., C],
    servers: Sequence[str],
    security: KafkaSecurity,
    **kwargs: Any,
) -> C:
    """``factory(bootstrap_servers=servers, <security settings>, **kwargs)`` (a kafka-python
    ``KafkaConsumer``, ``KafkaProducer`` or ``KafkaAdminClient``), bounded by
    ``bootstrap_timeout_ms`` (default 10 s); a failure to bootstrap raises
    :class:`KafkaConnectError` naming the broker and the cause."""
    try:
        security.check_servers(servers)
    except KafkaSecurityError as e:
        raise KafkaConnectError(str(e), True) from e
    if security.sasl_plain_password is not None:
        _MASK.secrets.add(security.sasl_plain_password.get_secret_value())
    kwargs.setdefault("bootstrap_timeout_ms", 10_000)
    kwargs.setdefault("request_timeout_ms", 10_000)
    with _Diagnosis() as diag:
        try:
            return factory(bootstrap_servers=list(servers), **security.client_kwargs(), **kwargs)
        except Exception as exc:
            if type(exc).__name__ == "KafkaConfigurationError":
                raise
            cause = diag.cause()
            if cause is None and "Authentication" in type(exc).__name__:
                cause = ("SASL authentication refused: wrong user name or password?", True)
            settings = cause[1] if cause else False
            raise KafkaConnectError(
                connection_error(servers, security, exc, cause), settings
            ) from exc
