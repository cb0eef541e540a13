"""Secrets and credential references.

The registry never holds a secret, only a *reference* to one (``env:NAME``,
``file:/etc/ctfleet/creds/x`` outside the repository, or ``vault:FILE#key`` for an
Ansible Vault file). References are resolved at the edges
(:mod:`ctfleet.edges.credentials`) into :class:`Secret` values, which print as
``<secret>`` everywhere: logs, errors, ``repr``, pydantic dumps and JSON.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

MASK = "<secret>"


class Secret:
    """A secret value that never shows itself unless asked with :meth:`reveal`.

    >>> s = Secret("hunter2"); print(s, repr(s), f"{s}")
    <secret> Secret('<secret>') <secret>
    """

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self):  # pickling would copy the value out of the process's control
        raise TypeError("Secret values cannot be pickled")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler):
        return core_schema.no_info_plain_validator_function(
            lambda v: v if isinstance(v, Secret) else Secret(str(v)),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: MASK),
        )


_REF = re.compile(r"^(?P<scheme>env|file|vault):(?P<target>.+)$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class CredentialRef(str):
    """A reference to a credential, never the credential itself.

    >>> CredentialRef.parse("env:CTFLEET_SNMP_RSK").scheme
    'env'
    >>> CredentialRef.parse("hunter2")
    Traceback (most recent call last):
    ...
    ValueError: value is not a credentials reference (not shown, it may be a secret); valid: env:NAME, file:/absolute/path (outside the repository), vault:FILE#key
    """

    VALID = "env:NAME, file:/absolute/path (outside the repository), vault:FILE#key"

    @classmethod
    def parse(cls, text: str) -> "CredentialRef":
        m = _REF.match(text.strip())
        if not m:
            # Never echo the text back: what is not a reference may well be a password.
            raise ValueError(f"value is not a credentials reference (not shown, it may be a secret); valid: {cls.VALID}")
        scheme, target = m["scheme"], m["target"]
        # The target is not echoed either: someone may have typed a password after "env:".
        if scheme == "env" and not _ENV_NAME.match(target):
            raise ValueError("env reference: variable name must match [A-Z_][A-Z0-9_]* (value not shown)")
        if scheme == "file" and not target.startswith("/"):
            raise ValueError("file reference: path must be absolute, outside the repository (value not shown)")
        if scheme == "vault" and "#" not in target:
            raise ValueError("vault reference: expected vault:FILE#key (value not shown)")
        return cls(text.strip())

    @property
    def scheme(self) -> str:
        return self.split(":", 1)[0]

    @property
    def target(self) -> str:
        return self.split(":", 1)[1]

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler):
        return core_schema.no_info_after_validator_function(
            lambda v: v if isinstance(v, CredentialRef) else cls.parse(v),
            core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )
