"""The actors of examples/nested.yaml."""
