"""ctfleet: infrastructure-as-code and fleet management for Morocco's territorial collectivities."""

__version__ = "0.1.0"
