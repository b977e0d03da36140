"""NICE CXone events into a typed, hourly partitioned data lake."""

__version__ = "0.1.0"
