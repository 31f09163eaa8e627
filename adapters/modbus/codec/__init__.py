"""SunSpec over Modbus on the wire: register layouts from pysunspec2's model definitions,
point values <-> registers, exception codes. Pure functions, no I/O, no core import: the
simulators share this package."""

from adapters.modbus.codec.layout import (
    ModelLayout,
    build_layout,
    count_points,
    layout_from_registers,
    mismatches,
    model_definition,
    write_runs,
)
from adapters.modbus.codec.points import (
    BASE_ADDRESSES,
    END_MODEL_ID,
    MAX_READ,
    MAX_WRITE,
    SUNS_MARKER,
    TYPES,
    CodecError,
    ExceptionCode,
    ModbusRefusal,
    PointSpec,
    Raw,
    TypeInfo,
    apply_sf,
    clamp_raw,
    decode_point,
    encode_point,
    has_marker,
)

__all__ = [
    "BASE_ADDRESSES", "END_MODEL_ID", "MAX_READ", "MAX_WRITE", "SUNS_MARKER", "TYPES",
    "CodecError", "ExceptionCode", "ModbusRefusal", "ModelLayout", "PointSpec", "Raw",
    "TypeInfo", "apply_sf", "build_layout", "clamp_raw", "count_points", "decode_point",
    "encode_point", "has_marker", "layout_from_registers", "mismatches", "model_definition",
    "write_runs",
]
