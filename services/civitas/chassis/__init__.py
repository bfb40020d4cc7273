"""The service chassis: what every Civitas service is built on, written once.

gRPC server factory (health, reflection, graceful shutdown), the interceptor that
authenticates, carries the correlation id, maps domain errors to status codes and
records RED metrics; settings from ``CIVITAS_`` variables; structured logs; the
/metrics endpoint; client channels with deadlines and retries on UNAVAILABLE.
"""
