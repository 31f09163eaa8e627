"""IEEE 2030.5 simple types as annotations: one marker per type, carrying its XSD facets.

A model field annotated ``Int16`` is an ``int`` for Python and an ``xs:short`` for the schema
we generate; the facets are what reject out-of-range input at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated


@dataclass(frozen=True, slots=True)
class Xsd:
    """The XSD base type and facets of one 2030.5 simple type."""

    name: str
    base: str
    min: int | None = None
    max: int | None = None
    max_length: int | None = None


UInt8 = Annotated[int, Xsd("UInt8", "xs:unsignedByte")]
UInt16 = Annotated[int, Xsd("UInt16", "xs:unsignedShort")]
UInt32 = Annotated[int, Xsd("UInt32", "xs:unsignedInt")]
UInt48 = Annotated[int, Xsd("UInt48", "xs:unsignedLong", max=2**48 - 1)]
Int16 = Annotated[int, Xsd("Int16", "xs:short")]
Int32 = Annotated[int, Xsd("Int32", "xs:int")]
Int48 = Annotated[int, Xsd("Int48", "xs:long", min=-(2**47), max=2**47)]  # (as sep.xsd)
TimeType = Annotated[int, Xsd("TimeType", "xs:long")]
TimeOffset = Annotated[int, Xsd("TimeOffsetType", "xs:int")]
# sep.xsd allows any Int8; the standard asks that -9..9 be supported, no more.
PowerOfTen = Annotated[int, Xsd("PowerOfTenMultiplierType", "xs:byte")]
OneHourRange = Annotated[int, Xsd("OneHourRangeType", "xs:short", min=-3600, max=3600)]
PerCent = Annotated[int, Xsd("PerCent", "xs:unsignedShort", max=10000)]
SignedPerCent = Annotated[int, Xsd("SignedPerCent", "xs:short", min=-10000, max=10000)]
Primacy = Annotated[int, Xsd("PrimacyType", "xs:unsignedByte")]
SFDI = Annotated[int, Xsd("SFDIType", "xs:unsignedLong", max=2**48 - 1)]
PIN = Annotated[int, Xsd("PINType", "xs:unsignedInt", max=999999)]
PEN = Annotated[int, Xsd("PENType", "xs:unsignedInt")]
HexBinary8 = Annotated[str, Xsd("HexBinary8", "xs:hexBinary", max_length=1)]
HexBinary16 = Annotated[str, Xsd("HexBinary16", "xs:hexBinary", max_length=2)]
HexBinary32 = Annotated[str, Xsd("HexBinary32", "xs:hexBinary", max_length=4)]
HexBinary160 = Annotated[str, Xsd("HexBinary160", "xs:hexBinary", max_length=20)]
MRID = Annotated[str, Xsd("mRIDType", "xs:hexBinary", max_length=16)]
String6 = Annotated[str, Xsd("String6", "xs:string", max_length=6)]
String16 = Annotated[str, Xsd("String16", "xs:string", max_length=16)]
String32 = Annotated[str, Xsd("String32", "xs:string", max_length=32)]
String192 = Annotated[str, Xsd("String192", "xs:string", max_length=192)]
AnyURI = Annotated[str, Xsd("anyURI", "xs:anyURI")]
Boolean = Annotated[bool, Xsd("boolean", "xs:boolean")]

SIMPLE_TYPES: tuple[object, ...] = (
    UInt8, UInt16, UInt32, UInt48, Int16, Int32, Int48, TimeType, TimeOffset, PowerOfTen,
    OneHourRange, PerCent, SignedPerCent, Primacy, SFDI, PIN, PEN, HexBinary8, HexBinary16,
    HexBinary32, HexBinary160, MRID, String6, String16, String32, String192, AnyURI, Boolean,
)
