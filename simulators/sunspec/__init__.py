"""Simulated SunSpec Modbus inverters: register images from pysunspec2 models, pymodbus server."""
