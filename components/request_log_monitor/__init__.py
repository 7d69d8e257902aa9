"""TFX component: skew/drift of a request-log window as ExampleStatistics + ExampleAnomalies."""
