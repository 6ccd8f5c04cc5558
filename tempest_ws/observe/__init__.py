"""Watching a deployment: Prometheus metrics, OpenTelemetry tracing and security events."""
