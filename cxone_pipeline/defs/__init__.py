"""Dagster wiring: assets, checks, sensors, schedules and resources that call the plain modules."""
