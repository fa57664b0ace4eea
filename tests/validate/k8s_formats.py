"""Kubernetes string and quantity formats, re-implemented for the test oracle.

Each function mirrors one helper of k8s.io/apimachinery and returns the list of
problems it finds (empty when the value is valid), like the Go originals do.
Sources:
  staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go
  staging/src/k8s.io/apimachinery/pkg/api/validate/content (label keys/values)
  staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go (ParseQuantity)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation, getcontext

getcontext().prec = 60  # quantities go up to 2^63 * 10^18; keep comparisons exact

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_PORT_NAME_CHARSET = re.compile(r"^[-a-z0-9]+$")
_ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_CONFIG_MAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_HTTP_HEADER_NAME = re.compile(r"^[-A-Za-z0-9]+$")

# Linux UIDs/GIDs: 1.29 still capped them at MaxInt32 (newer releases accept uint32);
# the oracle keeps the older, stricter bound so it holds for every version we check.
MAX_USER_ID = 2**31 - 1


def _text(check: Callable[[str], list[str]]) -> Callable[[object], list[str]]:
    """Validators take any JSON value: a non-string is one error (the schema says which)."""

    @functools.wraps(check)
    def wrapper(value: object) -> list[str]:
        return check(value) if isinstance(value, str) else ["must be a string"]

    return wrapper


@_text
def dns1123_label(value: str) -> list[str]:
    """IsDNS1123Label: container, volume, port-less names; at most 63 characters."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.match(value):
        if _DNS1123_SUBDOMAIN.match(value):
            errs.append("must not contain dots")
        else:
            errs.append(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                "characters or '-', and must start and end with an alphanumeric character"
            )
    return errs


@_text
def dns1123_subdomain(value: str) -> list[str]:
    """IsDNS1123Subdomain: object names, at most 253 characters."""
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.match(value):
        errs.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    return errs


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    """NameIsDNSSubdomain: a generateName prefix may end with '-' (maskTrailingDash)."""
    if prefix and len(name) > 1 and name.endswith("-"):
        name = name[:-1] + "a"
    return dns1123_subdomain(name)


@_text
def qualified_name(value: str) -> list[str]:
    """IsQualifiedName (content.IsLabelKey): `[prefix/]name`, name <= 63, prefix a subdomain."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errs = []
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs = ["prefix part must be non-empty"]
        else:
            errs = [f"prefix part {m}" for m in dns1123_subdomain(prefix)]
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character, with an optional "
            "DNS subdomain prefix and '/'"
        ]
    if not name:
        errs.append("name part must be non-empty")
    else:
        if len(name) > 63:
            errs.append("name part must be no more than 63 characters")
        if not _QUALIFIED_NAME_PART.match(name):
            errs.append(
                "name part must consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character"
            )
    return errs


@_text
def label_value(value: str) -> list[str]:
    """IsValidLabelValue: empty, or <= 63 alphanumerics with '-', '_', '.' inside."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE.match(value):
        errs.append(
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )
    return errs


@_text
def port_name(value: str) -> list[str]:
    """IsValidPortName: an IANA_SVC_NAME (RFC 6335), lower case only."""
    errs = []
    if len(value) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARSET.match(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search(r"[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def port_number(value: object) -> list[str]:
    """IsValidPortNum: 1..65535."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return []
    return ["must be between 1 and 65535, inclusive"]


def port_num_or_name(value: object) -> list[str]:
    """ValidatePortNumOrName (probe and handler ports)."""
    if isinstance(value, str):
        return port_name(value)
    return port_number(value)


def _chdir_prefix(value: str) -> list[str]:
    # hasChDirPrefix: '.' and '..' (and '..foo') would make kubelet paths escape.
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


@_text
def env_var_name(value: str) -> list[str]:
    """IsEnvVarName (the strict rule: RelaxedEnvironmentVariableValidation is off in 1.29)."""
    errs = []
    if not _ENV_VAR_NAME.match(value):
        errs.append(
            "a valid environment variable name must consist of alphabetic characters, "
            "digits, '_', '-', or '.', and must not start with a digit"
        )
    return errs + _chdir_prefix(value)


@_text
def config_map_key(value: str) -> list[str]:
    """IsConfigMapKey: keys of ConfigMaps/Secrets referenced by env and volumes."""
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _CONFIG_MAP_KEY.match(value):
        errs.append("a valid config key must consist of alphanumeric characters, '-', '_' or '.'")
    return errs + _chdir_prefix(value)


@_text
def http_header_name(value: str) -> list[str]:
    """IsHTTPHeaderName."""
    if _HTTP_HEADER_NAME.match(value):
        return []
    return ["a valid HTTP header must consist of alphanumeric characters or '-'"]


def user_id(value: object) -> list[str]:
    """IsValidUserID / IsValidGroupID (see MAX_USER_ID)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_USER_ID:
        return []
    return [f"must be between 0 and {MAX_USER_ID}, inclusive"]


# --- resource.Quantity -------------------------------------------------------

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value: object) -> Decimal | None:
    """resource.ParseQuantity: '100m', '64Mi', '1e3', 0.5 ... -> exact Decimal, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        value = repr(value)
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value)
    if not match:
        return None
    try:
        number = Decimal(match["number"])
    except InvalidOperation:
        return None
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * (Decimal(1024) ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    return number.scaleb(int(suffix[1:]))
