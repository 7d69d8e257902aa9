"""Layer 0: environment bootstrap, package resources, constants, library compatibility."""
