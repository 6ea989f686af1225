"""Schemathesis hooks for Strata's API (SCHEMATHESIS_HOOKS, set by crates/strata-cli/tests/schemathesis.rs).

Dataset definitions may be sent as TOML, which Schemathesis cannot write by itself: this is a
small TOML writer for the JSON values it generates (inline tables and arrays; `null`, which
TOML has no word for, leaves the key out, as an absent optional field means the same).
"""

import json
import math

import schemathesis


def _string(s):
    # TOML basic strings take JSON's escapes, except that a code point must be a scalar value.
    if any(0xD800 <= ord(c) <= 0xDFFF for c in s):
        s = s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return json.dumps(s, ensure_ascii=False)


def _key(k):
    return _string(str(k))


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None) + "}"
    return _string(str(v))


@schemathesis.serializer("application/toml")
def toml_serializer(ctx, value):
    if isinstance(value, dict):
        text = "".join(f"{_key(k)} = {_value(v)}\n" for k, v in value.items() if v is not None)
    else:
        # Not a table: send it as a value, which no TOML document is (the API must refuse it).
        text = _value(value) + "\n"
    return text.encode("utf-8")
