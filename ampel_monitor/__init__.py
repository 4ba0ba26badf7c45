"""ampel-monitor: streaming performance and drift monitoring of ML models."""

__version__ = "0.1.0"
