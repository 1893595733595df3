"""The job of examples/jobs.yaml."""
