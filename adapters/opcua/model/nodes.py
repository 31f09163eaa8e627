"""The DER information model as data: namespace, node ids, variables and methods. Pure, no I/O.

This is what a SCADA client sees on the wire; `docs/opcua.md` documents it for people. Node
ids are strings in our own namespace, derived from platform ids, so that a SCADA engineer
can configure a tag once and find it again after a gateway restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from adapters.opcua.codec.arguments import ArgumentSpec, MethodSpec
from adapters.opcua.codec.values import Dt, Quality

NAMESPACE_URI = "urn:der-gateway:opcua:der-model:1"


@dataclass(frozen=True, slots=True)
class VariableSpec:
    name: str  # browse name, also the last part of the node id
    dtype: Dt
    description: str
    array: bool = False


def _v(name: str, dtype: Dt, description: str, *, array: bool = False) -> VariableSpec:
    return VariableSpec(name, dtype, description, array)


# --- per DER ---------------------------------------------------------------------------------

MEASUREMENTS = (
    _v("W", Dt.DOUBLE, "Active power, W (positive: export / generation)"),
    _v("var", Dt.DOUBLE, "Reactive power, var"),
    _v("V", Dt.DOUBLE, "Voltage, V"),
    _v("Hz", Dt.DOUBLE, "Frequency, Hz"),
    _v("SoC", Dt.DOUBLE, "State of charge, percent"),
    _v("Connected", Dt.BOOLEAN, "Connection state reported by the DER"),
    _v("LastSeen", Dt.DATETIME, "Time of the latest reading from this DER"),
    _v("Online", Dt.BOOLEAN, "Whether the gateway currently reaches the DER"),
)

CONTROLS = (
    _v("ExportLimitW", Dt.DOUBLE, "Effective export cap, W"),
    _v("ImportLimitW", Dt.DOUBLE, "Effective import cap, W"),
    _v("GenerationLimitW", Dt.DOUBLE, "Effective generation cap, W (GoodNoData: none)"),
    _v("LoadLimitW", Dt.DOUBLE, "Effective load cap, W (GoodNoData: none)"),
    _v("SetpointW", Dt.DOUBLE, "Effective active-power setpoint, W (GoodNoData: none)"),
    _v("RequestedSetpointW", Dt.DOUBLE, "Setpoint requested before limits, W"),
    _v("Connect", Dt.BOOLEAN, "Effective connect command"),
    _v("Energize", Dt.BOOLEAN, "Effective energize command"),
    _v("IntervalStart", Dt.DATETIME, "Start of the interval now in force"),
    _v("IntervalEnd", Dt.DATETIME, "End of the interval now in force (GoodNoData: open)"),
    _v("IssuerOfRecord", Dt.STRING, "Participant whose instruction sets the setpoint"),
    _v("Sources", Dt.STRING, "Contributing instructions: 'instruction|issuer|kind|quantity|value'",
       array=True),
    _v("LimitedBy", Dt.STRING, "Instructions whose caps clipped the setpoint", array=True),
    _v("Reason", Dt.STRING, "Reasons given by the contributing instructions, '; '-joined"),
)

ACKNOWLEDGEMENT = (
    _v("Status", Dt.STRING, "Canonical status (received, completed, rejected, ...)"),
    _v("ProtocolStatus", Dt.STRING, "The DER protocol's own status, as received"),
    _v("InstructionId", Dt.STRING, "The acknowledged instruction, if known"),
    _v("Detail", Dt.STRING, "Free-text detail from the DER or its aggregator"),
    _v("At", Dt.DATETIME, "When the acknowledgement was made"),
)

DER_PROPERTIES = (
    _v("Kind", Dt.STRING, "pv, battery, ev, load or other"),
    _v("Protocol", Dt.STRING, "How the gateway reaches the DER"),
    _v("Aggregator", Dt.STRING, "Owning aggregator participant id, if any"),
    _v("RatedExportW", Dt.DOUBLE, "Nameplate export rating, W"),
    _v("RatedImportW", Dt.DOUBLE, "Nameplate import rating, W"),
    _v("RatedVar", Dt.DOUBLE, "Nameplate reactive rating, var"),
)

# Per DER, the objects holding each group of variables, in browse order.
DER_GROUPS: dict[str, tuple[VariableSpec, ...]] = {
    "Measurements": MEASUREMENTS,
    "Control": CONTROLS,
    "Acknowledgement": ACKNOWLEDGEMENT,
}

# How a group's variables start: measurements and the acknowledgement come from the DER, so
# they are not known yet; the control is the gateway's own (nothing in force: GoodNoData).
GROUP_QUALITY: dict[str, Quality] = {
    "Measurements": Quality.INITIAL,
    "Acknowledgement": Quality.INITIAL,
}
# Measurements that come from the DER itself: stale while the gateway cannot reach it.
# (Online is the gateway's own knowledge; LastSeen stays true while the DER is silent.)
FROM_DER = ("W", "var", "V", "Hz", "SoC", "Connected")

# --- per connection point and per T-D interface node -----------------------------------------

AGGREGATES = (
    _v("ActivePowerW", Dt.DOUBLE, "Sum of the latest W readings of the DERs below"),
    _v("ReactivePowerVar", Dt.DOUBLE, "Sum of the latest var readings of the DERs below"),
    _v("ExportLimitW", Dt.DOUBLE, "Sum of the effective export caps of the DERs below"),
    _v("ImportLimitW", Dt.DOUBLE, "Sum of the effective import caps of the DERs below"),
    _v("DerCount", Dt.UINT32, "Number of DERs below"),
    _v("OnlineCount", Dt.UINT32, "Number of DERs below that the gateway reaches"),
)

CP_PROPERTIES = (
    _v("TdNode", Dt.STRING, "T-D interface node of this connection point"),
    _v("Feeder", Dt.STRING, "Feeder of this connection point"),
    _v("Ldc", Dt.STRING, "LDC participant id"),
)

LDC_PROPERTIES = (
    _v("ParticipantId", Dt.STRING, "Platform participant id of the LDC"),
    _v("DsoModel", Dt.STRING, "dual_participation, total or market_facilitator"),
    _v("HostLdc", Dt.STRING, "Host LDC of an embedded LDC"),
)

# --- methods (shared method nodes, referenced by every DER object) ---------------------------


_INSTRUCTION_ID = ArgumentSpec("InstructionId", Dt.STRING, "Id of the platform instruction")
_DURATION = ArgumentSpec("DurationS", Dt.UINT32, "Seconds from now; 0: until cleared")
_REASON = ArgumentSpec("Reason", Dt.STRING, "Why; shown to everyone the instruction concerns")


class MethodName(StrEnum):
    SET_LIMIT = "SetOperatingLimit"
    CLEAR_LIMIT = "ClearOperatingLimit"
    DISPATCH = "Dispatch"
    CONNECT = "Connect"
    DISCONNECT = "Disconnect"


METHODS = (
    MethodSpec(
        MethodName.SET_LIMIT,
        "Cap this DER; a negative value leaves that quantity uncapped",
        (
            ArgumentSpec("ExportMaxW", Dt.DOUBLE, "Export cap, W"),
            ArgumentSpec("ImportMaxW", Dt.DOUBLE, "Import cap, W"),
            ArgumentSpec("GenerationMaxW", Dt.DOUBLE, "Generation cap, W"),
            ArgumentSpec("LoadMaxW", Dt.DOUBLE, "Load cap, W"),
            _DURATION,
            _REASON,
        ),
        (_INSTRUCTION_ID,),
    ),
    MethodSpec(
        MethodName.CLEAR_LIMIT,
        "Cancel a limit this LDC set on this DER; an empty id cancels all of them",
        (ArgumentSpec("InstructionId", Dt.STRING, "The limit to cancel, or empty for all"),),
        (ArgumentSpec("Cleared", Dt.UINT32, "Number of limits cancelled"),),
    ),
    MethodSpec(
        MethodName.DISPATCH,
        "Dispatch an active-power setpoint to this DER",
        (ArgumentSpec("SetpointW", Dt.DOUBLE, "Setpoint, W"), _DURATION, _REASON),
        (_INSTRUCTION_ID,),
    ),
    MethodSpec(MethodName.CONNECT, "Connect this DER", (_DURATION, _REASON), (_INSTRUCTION_ID,)),
    MethodSpec(MethodName.DISCONNECT, "Disconnect this DER", (_DURATION, _REASON),
               (_INSTRUCTION_ID,)),
)

# --- object types and node ids ---------------------------------------------------------------

OBJECT_TYPES = ("FleetType", "LdcType", "TdNodeType", "ConnectionPointType", "DerType")
