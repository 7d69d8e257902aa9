"""Pipeline definition, runners and lineage queries for the taxi model."""
