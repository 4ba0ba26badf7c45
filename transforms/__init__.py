"""Apache Beam glue of ampel-monitor: sources, windowing, alerts and sinks."""
