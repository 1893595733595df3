"""The ``rebeam`` command line's parsers, one module per command, apart from the commands'
bodies (``rebeam.cli.<command>``).

Building the parser must stay cheap: ``rebeam --version``, ``--help`` and a usage error need
only argparse. So these modules import nothing but the standard library and rebeam's light
modules (pids); a command's body, which brings nats-py, pydantic, rich, yaml and the SDK, is
imported when that command runs (docs/sdk.md, "A fast command line").
"""

from rebeam.cli.parsers import (
    children,
    inspect,
    mailbox,
    messages,
    observe,
    run,
    runs,
    secrets,
    validate,
)

# Here, not in rebeam.cli: there, these names would hide the commands' bodies (rebeam.cli.run).
COMMANDS = [run, runs, validate, inspect, observe, messages, children, mailbox, secrets]
"""Each adds its command(s) to ``rebeam``'s parser, in this order in ``rebeam --help``."""
