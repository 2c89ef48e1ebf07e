"""flosssweep: sweeps of gradient flossing and sparse teacher forcing, tracked in MLflow."""

__version__ = "0.1.0"
