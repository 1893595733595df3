"""The rebeam Kubernetes operator (kopf)."""
