"""Pipeline definition and runners for the taxi model."""
