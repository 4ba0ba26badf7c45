"""The Beam jobs of ampel-monitor, one module per job."""
