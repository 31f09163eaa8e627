"""The OPC UA status codes the model answers with (Part 4, 7.39; Part 8, 6.3.2; Part 6
StatusCode.csv), by name. Numbers only: the server edge makes asyncua's StatusCode of them."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    GOOD = 0x00000000
    GOOD_NO_DATA = 0x00A50000
    UNCERTAIN_INITIAL_VALUE = 0x40920000
    UNCERTAIN_NO_COMMUNICATION_LAST_USABLE_VALUE = 0x408F0000
    BAD_NO_COMMUNICATION = 0x80310000
    BAD_INVALID_ARGUMENT = 0x80AB0000
    BAD_TYPE_MISMATCH = 0x80740000
    BAD_OUT_OF_RANGE = 0x803C0000
    BAD_ARGUMENTS_MISSING = 0x80760000
    BAD_TOO_MANY_ARGUMENTS = 0x80E50000
