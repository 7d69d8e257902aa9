"""InfraCanary: InfraValidator's replacement that canaries our own server."""

from components.infra_canary.component import InfraCanary

__all__ = ["InfraCanary"]
