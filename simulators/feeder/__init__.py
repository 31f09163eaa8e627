"""Feeder co-simulation: simulated DERs at the buses of a pandapower benchmark feeder."""

from simulators.feeder.cosim import Feeder, FeederConfig
from simulators.feeder.report import FeederReport
from simulators.feeder.voltwatt import VoltWatt

__all__ = ["Feeder", "FeederConfig", "FeederReport", "VoltWatt"]
