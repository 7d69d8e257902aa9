"""Behavioral checks on the candidate model: a gate before push."""

from components.behavioral.artifact import BehavioralBlessing
from components.behavioral.component import BehavioralChecks

__all__ = ["BehavioralBlessing", "BehavioralChecks"]
