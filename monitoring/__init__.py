"""Monitoring of the served model: request logs -> TFDV skew/drift, reports, gauges."""
