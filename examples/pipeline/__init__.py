"""The actors of examples/pipeline.yaml: a fetcher hands lines to a parser, which hands rows
to a writer that keeps them in a SQLite database."""
