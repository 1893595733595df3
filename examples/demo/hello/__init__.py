"""The actors of the README's demo (examples/demo/app.yaml)."""
