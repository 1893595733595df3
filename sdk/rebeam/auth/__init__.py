"""Authentication and least privilege on NATS: credentials, grants and their issuer.

See docs/security.md. The modules, from the bottom up: :mod:`~rebeam.auth.nkeys` (keys),
:mod:`~rebeam.auth.jwt` (signed claims), :mod:`~rebeam.auth.grants` (who may do what: pure),
:mod:`~rebeam.auth.issuer` (the auth-callout service), :mod:`~rebeam.auth.serverconf` (a
nats-server that requires all of it).
"""
