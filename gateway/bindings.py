"""How DERs are reached: each adapter's rule for its binding addresses.

The core knows no protocol. An adapter package exposes `address_key(address) -> str`
beside `create_adapter`: it refuses a malformed address (InvalidInput, with the reason) and
returns the address's identity, so that one address binds one DER. The runtime collects
the rules of the installed adapters; a binding for a protocol no adapter speaks is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from typing import Any

from gateway.domain import Binding
from gateway.errors import InvalidInput

AddressKey = Callable[[dict[str, Any]], str]


def canonical_address_key(address: Mapping[str, Any], *, upper: Collection[str] = (),
                          ignore: Collection[str] = ()) -> str:
    """The usual identity: the address as sorted JSON, `upper` keys' text upper-cased (so
    hex identities compare case-insensitively), `ignore` keys (options, not identity) left
    out."""
    canonical = {k: (v.upper() if isinstance(v, str) and k in upper else v)
                 for k, v in sorted(address.items()) if k not in ignore}
    return json.dumps(canonical, sort_keys=True)


def require_keys(address: Mapping[str, Any], *keys: str) -> None:
    missing = [k for k in keys if address.get(k) in (None, "")]
    if missing:
        raise InvalidInput(f"binding address needs {', '.join(missing)}")


class BindingRules:
    def __init__(self, rules: Mapping[str, AddressKey]) -> None:
        self._rules = dict(rules)

    @classmethod
    def installed(cls) -> BindingRules:
        """The rules of every adapter installed (entry points), enabled or not."""
        from gateway.adapters import discover  # (the runtime passes its own discovery)

        return cls({name: a.address_key for name, a in discover().items()})

    @property
    def protocols(self) -> list[str]:
        return sorted(self._rules)

    def key(self, binding: Binding) -> str:
        """Validate `binding`; its unique key (protocol and address identity)."""
        rule = self._rules.get(str(binding.protocol))
        if rule is None:
            raise InvalidInput(f"no adapter speaks protocol {str(binding.protocol)!r}; "
                               f"installed: {', '.join(self.protocols) or 'none'}")
        if not isinstance(binding.address, dict):
            raise InvalidInput("a binding address is a JSON object")
        return f"{binding.protocol}:{rule(binding.address)}"
