"""A SunSpec device's holding-register image: "SunS", model blocks, end marker. Pure.

Every block is laid out by the shared codec from pysunspec2's model definitions; this module
only places blocks one after another and reads/writes points by (model id, path).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from adapters.modbus.codec import (
    END_MODEL_ID,
    SUNS_MARKER,
    ModelLayout,
    PointSpec,
    Raw,
    build_layout,
    clamp_raw,
    encode_point,
)


@dataclass(frozen=True, slots=True)
class Block:
    layout: ModelLayout
    start: int  # offset of the model's ID register in the image

    @property
    def model_id(self) -> int:
        return self.layout.model_id


class RegisterImage:
    """Registers from `base` on; offsets below are relative to `base`."""

    def __init__(self, base: int, models: Sequence[tuple[int, Mapping[str, int]]]) -> None:
        self.base = base
        self.regs: list[int] = list(SUNS_MARKER)
        self.blocks: dict[int, Block] = {}
        for model_id, counts in models:
            layout = build_layout(model_id, counts)
            block = Block(layout, len(self.regs))
            self.regs += [0] * layout.size
            self.blocks[model_id] = block
            self._init_block(block)
        self.regs += [END_MODEL_ID, 0]
        self._starts = sorted((b.start, b) for b in self.blocks.values())

    def _init_block(self, block: Block) -> None:
        """Every point "not implemented" until set; ID, L and count points filled in."""
        for spec in block.layout.points.values():
            self._put(block, spec, None)
        self._put(block, block.layout.point("ID"), block.model_id)
        self._put(block, block.layout.point("L"), block.layout.length)

    def _put(self, block: Block, spec: PointSpec, raw: Raw) -> None:
        at = block.start + spec.offset
        self.regs[at : at + spec.size] = encode_point(spec, raw)

    # -- by name -------------------------------------------------------------------------

    def block(self, model_id: int) -> Block:
        return self.blocks[model_id]

    def model_regs(self, model_id: int) -> list[int]:
        b = self.blocks[model_id]
        return self.regs[b.start : b.start + b.layout.size]

    def get(self, model_id: int, path: str) -> Raw:
        b = self.blocks[model_id]
        return b.layout.raw(self.regs[b.start : b.start + b.layout.size], path)

    def value(self, model_id: int, path: str) -> float | None:
        b = self.blocks[model_id]
        return b.layout.value(self.regs[b.start : b.start + b.layout.size], path)

    def set(self, model_id: int, path: str, raw: Raw) -> None:
        b = self.blocks[model_id]
        self._put(b, b.layout.point(path), raw)

    def set_many(self, model_id: int, values: Mapping[str, Raw]) -> None:
        for path, raw in values.items():
            self.set(model_id, path, raw)

    def set_value(self, model_id: int, path: str, value: float) -> None:
        """Store an engineering value through the point's scale factor (already set)."""
        b = self.blocks[model_id]
        spec = b.layout.point(path)
        regs = b.layout.encode_value(self.regs[b.start : b.start + b.layout.size], path, value)
        self.regs[b.start + spec.offset : b.start + spec.offset + spec.size] = regs

    def writer(self, model_id: int, path: str) -> Callable[[float | None], None]:
        """A fast setter for a point refreshed every step; its scale factor is static."""
        b = self.blocks[model_id]
        spec = b.layout.point(path)
        start = b.start + spec.offset
        end = start + spec.size
        scale = 10.0 ** b.layout.scale(self.regs[b.start : b.start + b.layout.size], spec)
        regs = self.regs
        last: list[float | None] = [math.nan]  # a fleet steps thousands of these a second

        def put(value: float | None) -> None:
            if value == last[0]:
                return
            raw = None if value is None else clamp_raw(spec, round(value / scale))
            regs[start:end] = encode_point(spec, raw)
            last[0] = value

        return put

    # -- by address ------------------------------------------------------------------------

    def copy(self, model_id: int, source: str, target: str) -> None:
        """Copy a point's registers onto another point of the same type (reversion, adoption)."""
        b = self.blocks[model_id]
        src, dst = b.layout.point(source), b.layout.point(target)
        if (src.type, src.size) != (dst.type, dst.size):
            raise ValueError(f"cannot copy {source} onto {target}")
        at, to = b.start + src.offset, b.start + dst.offset
        self.regs[to : to + dst.size] = self.regs[at : at + src.size]

    def contains(self, offset: int, count: int) -> bool:
        return offset >= 0 and offset + count <= len(self.regs)

    def touched(self, offset: int, count: int) -> list[tuple[Block, list[PointSpec]]]:
        """The points of each model that registers [offset, offset+count) overlap."""
        out: list[tuple[Block, list[PointSpec]]] = []
        i = max(0, bisect_right([s for s, _ in self._starts], offset) - 1)
        for start, block in self._starts[i:]:
            if start >= offset + count:
                break
            rel = offset - start
            points = block.layout.points_in(rel, count)
            if points:
                out.append((block, points))
        return out
