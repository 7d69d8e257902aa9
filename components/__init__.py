"""Taxi model code used by the pipeline: features, Transform and Trainer
modules, and custom components (anomalies gate, atomic pusher)."""
