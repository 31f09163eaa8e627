"""Australian National Metering Identifiers (the CSIP-AUS ConnectionPoint id): pure checks."""

from __future__ import annotations

ALLOWED = frozenset("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ")  # no I or O


def checksum(base: str) -> int:
    """The NMI checksum digit: from the right, every other ASCII code doubled, digits summed."""
    total = 0
    for position, char in enumerate(reversed(base)):
        value = ord(char) * (2 if position % 2 == 0 else 1)
        total += sum(int(d) for d in str(value))
    return (10 - total % 10) % 10


def is_valid(nmi: str) -> bool:
    """10 characters (letters other than I and O, digits), optionally with its checksum."""
    base, check = nmi[:10], nmi[10:]
    if len(base) != 10 or len(check) > 1 or not set(base) <= ALLOWED:
        return False
    return not check or check == str(checksum(base))
