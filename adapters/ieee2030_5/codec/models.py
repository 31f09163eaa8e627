"""IEEE 2030.5 (+ CSIP-AUS) wire models, named exactly as the standard names its elements.

Field order is element order (the schema is a sequence). Fields marked ``attr()`` are XML
attributes; ``aus()`` places an element in the CSIP-AUS namespace. A field without a default
is required. Lists of child elements use ``list[...]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, dataclass_transform

from adapters.ieee2030_5.codec.simple import (
    MRID,
    PEN,
    PIN,
    SFDI,
    AnyURI,
    Boolean,
    HexBinary8,
    HexBinary16,
    HexBinary32,
    HexBinary160,
    Int16,
    Int32,
    Int48,
    OneHourRange,
    PerCent,
    PowerOfTen,
    Primacy,
    SignedPerCent,
    String6,
    String16,
    String32,
    String192,
    TimeOffset,
    TimeType,
    UInt8,
    UInt16,
    UInt32,
    UInt48,
)

SEP_NS = "urn:ieee:std:2030.5:ns"
CSIPAUS_NS = "https://csipaus.org/ns"


def attr(default: Any = None) -> Any:
    return field(default=default, metadata={"attr": True})


def aus(default: Any = None) -> Any:
    return field(default=default, metadata={"ns": CSIPAUS_NS})


def many() -> Any:
    return field(default_factory=list)


@dataclass_transform(kw_only_default=True, field_specifiers=(field,))
def W[T](cls: type[T]) -> type[T]:
    """Every wire model: a keyword-only, ordered, slotted dataclass (dataclass_transform
    tells type checkers so: a required field may follow an optional one)."""
    return dataclass(kw_only=True, slots=True)(cls)


# --- base types -----------------------------------------------------------------------------


@W
class Resource:
    ns: ClassVar[str] = SEP_NS
    href: AnyURI | None = attr()


@W
class SubscribableResource(Resource):
    subscribable: UInt8 | None = attr()


@W
class Link:
    href: AnyURI = attr()


@W
class ListLink:
    href: AnyURI = attr()
    all: UInt32 | None = attr()


@W
class SepList(Resource):
    # Required by the standard; optional in what we accept (some clients omit them on the
    # MirrorMeterReadingList they post), always emitted by us.
    all: UInt32 | None = attr(0)
    results: UInt32 | None = attr(0)


@W
class SubscribableList(SepList):
    subscribable: UInt8 | None = attr()


@W
class IdentifiedObject(Resource):
    mRID: MRID
    description: String32 | None = None
    version: UInt16 | None = None


@W
class SubscribableIdentifiedObject(SubscribableResource):
    mRID: MRID
    description: String32 | None = None
    version: UInt16 | None = None


# --- values ---------------------------------------------------------------------------------


@W
class ActivePower:
    multiplier: PowerOfTen
    value: Int16


@W
class ReactivePower:
    multiplier: PowerOfTen
    value: Int16


@W
class UnsignedValue:
    """ApparentPower, CurrentRMS, VoltageRMS, AmpereHour, WattHour, ReactiveSusceptance."""

    multiplier: PowerOfTen
    value: UInt16


@W
class PowerFactor:
    displacement: UInt16
    multiplier: PowerOfTen


@W
class PowerFactorWithExcitation:
    displacement: UInt16
    excitation: Boolean
    multiplier: PowerOfTen


@W
class FixedVar:
    refType: UInt8
    value: SignedPerCent


@W
class FreqDroopType:
    """Frequency-droop (frequency-watt) parameters: dead bands in thousandths of Hz, gains in
    thousandths (per-unit frequency change per per-unit power change), openLoopTms in
    hundredths of a second (0: no limit)."""

    dBOF: UInt32
    dBUF: UInt32
    kOF: UInt16
    kUF: UInt16
    openLoopTms: UInt16


@W
class DateTimeInterval:
    duration: UInt32
    start: TimeType


@W
class EventStatus:
    currentStatus: UInt8
    dateTime: TimeType
    potentiallySuperseded: Boolean
    potentiallySupersededTime: TimeType | None = None
    reason: String192 | None = None


# --- discovery, time, registration ----------------------------------------------------------


@W
class DeviceCapability(Resource):
    pollRate: UInt32 | None = attr()
    DERProgramListLink: ListLink | None = None
    ResponseSetListLink: ListLink | None = None
    TimeLink: Link | None = None
    EndDeviceListLink: ListLink | None = None
    MirrorUsagePointListLink: ListLink | None = None
    SelfDeviceLink: Link | None = None


@W
class Time(Resource):
    pollRate: UInt32 | None = attr()
    currentTime: TimeType
    dstEndTime: TimeType
    dstOffset: TimeOffset
    dstStartTime: TimeType
    localTime: TimeType | None = None
    quality: UInt8
    tzOffset: TimeOffset


@W
class EndDevice(SubscribableResource):
    ConfigurationLink: Link | None = None
    DERListLink: ListLink | None = None
    deviceCategory: HexBinary32 | None = None
    DeviceInformationLink: Link | None = None
    DeviceStatusLink: Link | None = None
    FileStatusLink: Link | None = None
    IPInterfaceListLink: ListLink | None = None
    lFDI: HexBinary160 | None = None
    LoadShedAvailabilityListLink: ListLink | None = None
    LogEventListLink: ListLink | None = None
    PowerStatusLink: Link | None = None
    sFDI: SFDI
    changedTime: TimeType
    enabled: Boolean | None = None
    FlowReservationRequestListLink: ListLink | None = None
    FlowReservationResponseListLink: ListLink | None = None
    FunctionSetAssignmentsListLink: ListLink | None = None
    postRate: UInt32 | None = None
    RegistrationLink: Link | None = None
    SubscriptionListLink: ListLink | None = None
    ConnectionPointLink: Link | None = aus()


@W
class EndDeviceList(SubscribableList):
    pollRate: UInt32 | None = attr()
    EndDevice: list[EndDevice] = many()


@W
class Registration(Resource):
    pollRate: UInt32 | None = attr()
    dateTimeRegistered: TimeType
    pIN: PIN


@W
class ConnectionPoint(Resource):
    ns: ClassVar[str] = CSIPAUS_NS
    connectionPointId: String32


# --- programs and controls ------------------------------------------------------------------


@W
class FunctionSetAssignments(SubscribableResource):
    # FunctionSetAssignmentsBase's links come before the IdentifiedObject fields here.
    DERProgramListLink: ListLink | None = None
    ResponseSetListLink: ListLink | None = None
    TimeLink: Link | None = None
    mRID: MRID
    description: String32 | None = None
    version: UInt16 | None = None


@W
class FunctionSetAssignmentsList(SubscribableList):
    pollRate: UInt32 | None = attr()
    FunctionSetAssignments: list[FunctionSetAssignments] = many()


@W
class DERProgram(SubscribableIdentifiedObject):
    ActiveDERControlListLink: ListLink | None = None
    DefaultDERControlLink: Link | None = None
    DERControlListLink: ListLink | None = None
    DERCurveListLink: ListLink | None = None
    primacy: Primacy


@W
class DERProgramList(SubscribableList):
    pollRate: UInt32 | None = attr()
    DERProgram: list[DERProgram] = many()


@W
class DERControlBase:
    opModConnect: Boolean | None = None
    opModEnergize: Boolean | None = None
    opModFixedPFAbsorbW: PowerFactorWithExcitation | None = None
    opModFixedPFInjectW: PowerFactorWithExcitation | None = None
    opModFixedVar: FixedVar | None = None
    opModFixedW: SignedPerCent | None = None
    opModFreqDroop: FreqDroopType | None = None
    opModFreqWatt: Link | None = None
    opModMaxLimW: PerCent | None = None
    opModTargetVar: ReactivePower | None = None
    opModTargetW: ActivePower | None = None
    opModVoltVar: Link | None = None
    opModVoltWatt: Link | None = None
    opModWattPF: Link | None = None
    opModWattVar: Link | None = None
    rampTms: UInt16 | None = None
    opModImpLimW: ActivePower | None = aus()
    opModExpLimW: ActivePower | None = aus()
    opModGenLimW: ActivePower | None = aus()
    opModLoadLimW: ActivePower | None = aus()


@W
class DERControl(SubscribableIdentifiedObject):
    replyTo: AnyURI | None = attr()
    responseRequired: HexBinary8 | None = attr()
    creationTime: TimeType
    EventStatus: EventStatus
    interval: DateTimeInterval
    randomizeDuration: OneHourRange | None = None
    randomizeStart: OneHourRange | None = None
    DERControlBase: DERControlBase
    deviceCategory: HexBinary32 | None = None


@W
class DERControlList(SubscribableList):
    DERControl: list[DERControl] = many()


@W
class DefaultDERControl(SubscribableIdentifiedObject):
    DERControlBase: DERControlBase
    setESDelay: UInt32 | None = None
    setESHighFreq: UInt16 | None = None
    setESHighVolt: Int16 | None = None
    setESLowFreq: UInt16 | None = None
    setESLowVolt: Int16 | None = None
    setESRampTms: UInt32 | None = None
    setESRandomDelay: UInt32 | None = None
    setGradW: UInt16 | None = None
    setSoftGradW: UInt16 | None = None


@W
class CurveData:
    excitation: Boolean | None = None
    xvalue: Int32
    yvalue: Int32


@W
class DERCurve(IdentifiedObject):
    creationTime: TimeType
    CurveData: list[CurveData] = many()
    curveType: UInt8
    openLoopTms: UInt16 | None = None
    xMultiplier: PowerOfTen
    yMultiplier: PowerOfTen
    yRefType: UInt8


@W
class DERCurveList(SepList):
    DERCurve: list[DERCurve] = many()


# --- DER and its status documents -----------------------------------------------------------


@W
class DER(SubscribableResource):
    AssociatedDERProgramListLink: ListLink | None = None
    AssociatedUsagePointLink: Link | None = None
    CurrentDERProgramLink: Link | None = None
    DERAvailabilityLink: Link | None = None
    DERCapabilityLink: Link | None = None
    DERSettingsLink: Link | None = None
    DERStatusLink: Link | None = None


@W
class DERList(SepList):
    pollRate: UInt32 | None = attr()
    DER: list[DER] = many()


@W
class DERCapability(Resource):
    modesSupported: HexBinary32
    rtgAbnormalCategory: UInt8 | None = None
    rtgMaxA: UnsignedValue | None = None
    rtgMaxAh: UnsignedValue | None = None
    rtgMaxChargeRateVA: UnsignedValue | None = None
    rtgMaxChargeRateW: ActivePower | None = None
    rtgMaxDischargeRateVA: UnsignedValue | None = None
    rtgMaxDischargeRateW: ActivePower | None = None
    rtgMaxV: UnsignedValue | None = None
    rtgMaxVA: UnsignedValue | None = None
    rtgMaxVar: ReactivePower | None = None
    rtgMaxVarNeg: ReactivePower | None = None
    rtgMaxW: ActivePower
    rtgMaxWh: UnsignedValue | None = None
    rtgMinPFOverExcited: PowerFactor | None = None
    rtgMinPFUnderExcited: PowerFactor | None = None
    rtgMinV: UnsignedValue | None = None
    rtgNormalCategory: UInt8 | None = None
    rtgOverExcitedPF: PowerFactor | None = None
    rtgOverExcitedW: ActivePower | None = None
    rtgReactiveSusceptance: UnsignedValue | None = None
    rtgUnderExcitedPF: PowerFactor | None = None
    rtgUnderExcitedW: ActivePower | None = None
    rtgVNom: UnsignedValue | None = None
    type: UInt8
    # Required by CSIP-AUS, absent from plain 2030.5: a plain CSIP client (or a CSIP-AUS one
    # before it has seen our DeviceCapability) sends none, and is not refused for it.
    doeModesSupported: HexBinary8 | None = aus()


@W
class DERSettings(SubscribableResource):
    modesEnabled: HexBinary32 | None = None
    setESDelay: UInt32 | None = None
    setESHighFreq: UInt16 | None = None
    setESHighVolt: Int16 | None = None
    setESLowFreq: UInt16 | None = None
    setESLowVolt: Int16 | None = None
    setESRampTms: UInt32 | None = None
    setESRandomDelay: UInt32 | None = None
    setGradW: UInt16
    setMaxA: UnsignedValue | None = None
    setMaxAh: UnsignedValue | None = None
    setMaxChargeRateVA: UnsignedValue | None = None
    setMaxChargeRateW: ActivePower | None = None
    setMaxDischargeRateVA: UnsignedValue | None = None
    setMaxDischargeRateW: ActivePower | None = None
    setMaxV: UnsignedValue | None = None
    setMaxVA: UnsignedValue | None = None
    setMaxVar: ReactivePower | None = None
    setMaxVarNeg: ReactivePower | None = None
    setMaxW: ActivePower
    setMaxWh: UnsignedValue | None = None
    setMinPFOverExcited: PowerFactor | None = None
    setMinPFUnderExcited: PowerFactor | None = None
    setMinV: UnsignedValue | None = None
    setSoftGradW: UInt16 | None = None
    setVNom: UnsignedValue | None = None
    setVRef: UnsignedValue | None = None
    setVRefOfs: UnsignedValue | None = None
    updatedTime: TimeType
    doeModesEnabled: HexBinary8 | None = aus()


@W
class StatusValue:
    """ConnectStatusType / InverterStatusType / ... : a time and a small value."""

    dateTime: TimeType
    value: UInt8


@W
class HexStatusValue:
    dateTime: TimeType
    value: HexBinary8


@W
class PercentStatusValue:
    dateTime: TimeType
    value: PerCent


@W
class ManufacturerStatusValue:
    dateTime: TimeType
    value: String6


@W
class DERStatus(SubscribableResource):
    alarmStatus: HexBinary32 | None = None
    genConnectStatus: HexStatusValue | None = None
    inverterStatus: StatusValue | None = None
    localControlModeStatus: StatusValue | None = None
    manufacturerStatus: ManufacturerStatusValue | None = None
    operationalModeStatus: StatusValue | None = None
    readingTime: TimeType
    stateOfChargeStatus: PercentStatusValue | None = None
    storageModeStatus: StatusValue | None = None
    storConnectStatus: HexStatusValue | None = None


@W
class DERAvailability(SubscribableResource):
    availabilityDuration: UInt32 | None = None
    maxChargeDuration: UInt32 | None = None
    readingTime: TimeType
    reserveChargePercent: PerCent | None = None
    reservePercent: PerCent | None = None
    statVarAvail: ReactivePower | None = None
    statWAvail: ActivePower | None = None


# --- responses ------------------------------------------------------------------------------


@W
class Response(Resource):
    createdDateTime: TimeType | None = None
    endDeviceLFDI: HexBinary160
    status: UInt8 | None = None
    subject: MRID


@W
class DERControlResponse(Response):
    pass


@W
class ResponseList(SepList):
    Response: list[Response] = many()


@W
class ResponseSet(IdentifiedObject):
    ResponseListLink: ListLink | None = None


@W
class ResponseSetList(SepList):
    pollRate: UInt32 | None = attr()
    ResponseSet: list[ResponseSet] = many()


# --- metering mirror ------------------------------------------------------------------------


@W
class UnitValue:
    """UnitValueType: a value with its unit (calorific value, conversion factor)."""

    multiplier: PowerOfTen
    unit: UInt8
    value: Int32


@W
class ReadingType(Resource):
    accumulationBehaviour: UInt8 | None = None
    calorificValue: UnitValue | None = None
    commodity: UInt8 | None = None
    conversionFactor: UnitValue | None = None
    dataQualifier: UInt8 | None = None
    flowDirection: UInt8 | None = None
    intervalLength: UInt32 | None = None
    kind: UInt8 | None = None
    maxNumberOfIntervals: UInt8 | None = None
    numberOfConsumptionBlocks: UInt8 | None = None
    numberOfTouTiers: UInt8 | None = None
    phase: UInt8 | None = None
    powerOfTenMultiplier: PowerOfTen | None = None
    subIntervalLength: UInt32 | None = None
    supplyLimit: UInt48 | None = None
    tieredConsumptionBlocks: Boolean | None = None
    uom: UInt8 | None = None


@W
class Reading(SubscribableResource):
    consumptionBlock: UInt8 | None = None
    qualityFlags: HexBinary16 | None = None
    timePeriod: DateTimeInterval | None = None
    touTier: UInt8 | None = None
    value: Int48 | None = None
    localID: HexBinary16 | None = None


@W
class MirrorReadingSet(IdentifiedObject):
    timePeriod: DateTimeInterval
    Reading: list[Reading] = many()


@W
class MirrorMeterReading(IdentifiedObject):
    lastUpdateTime: TimeType | None = None
    MirrorReadingSet: list[MirrorReadingSet] = many()
    nextUpdateTime: TimeType | None = None
    Reading: Reading | None = None
    ReadingType: ReadingType | None = None


@W
class MirrorMeterReadingList(SepList):
    MirrorMeterReading: list[MirrorMeterReading] = many()


@W
class MirrorUsagePoint(IdentifiedObject):
    roleFlags: HexBinary16
    serviceCategoryKind: UInt8
    status: UInt8
    deviceLFDI: HexBinary160
    MirrorMeterReading: list[MirrorMeterReading] = many()
    postRate: UInt32 | None = None


@W
class MirrorUsagePointList(SepList):
    pollRate: UInt32 | None = attr()
    MirrorUsagePoint: list[MirrorUsagePoint] = many()


# --- subscriptions, notifications, log events, errors ---------------------------------------


@W
class Condition:
    attributeIdentifier: UInt8
    lowerThreshold: Int48
    upperThreshold: Int48


@W
class Subscription(Resource):
    subscribedResource: AnyURI
    Condition: Condition | None = None
    encoding: UInt8
    level: String16
    limit: UInt32
    notificationURI: AnyURI


@W
class SubscriptionList(SepList):
    pollRate: UInt32 | None = attr()
    Subscription: list[Subscription] = many()


@W
class Notification(Resource):
    subscribedResource: AnyURI
    newResourceURI: AnyURI | None = None
    Resource: Any = field(default=None, metadata={"xsi_type": True})
    status: UInt8
    subscriptionURI: AnyURI


@W
class LogEvent(Resource):
    createdDateTime: TimeType
    details: String32 | None = None
    extendedData: UInt32 | None = None
    functionSet: UInt8
    logEventCode: UInt8
    logEventID: UInt16
    logEventPEN: PEN
    profileID: UInt8


@W
class LogEventList(SubscribableList):
    pollRate: UInt32 | None = attr()
    LogEvent: list[LogEvent] = many()


@W
class Error:
    maxRetryDuration: UInt16 | None = None
    reasonCode: UInt16


# Documents a client may send us: the root element name -> model.
INBOUND: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        EndDevice, ConnectionPoint, DERCapability, DERSettings, DERStatus, DERAvailability,
        Response, DERControlResponse, MirrorUsagePoint, MirrorMeterReading,
        MirrorMeterReadingList, Subscription, LogEvent,
    )
}
