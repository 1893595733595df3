"""``rebeam run FILE...``: run supervision trees on this machine.

Starts a private nats-server (or uses ``--nats URL``), starts every tree, shows it live, and
keeps it alive by OTP's rules until Ctrl-C, an auto-shutdown or a root supervisor giving up.
``--quiet`` is for a service manager's journal or a script: rebeam says nothing but its
warnings and its final line, and the children's output is dropped too unless
``--show-output`` asks for it (README, "Output").

Exit code: 0 for a clean end, 1 when a supervisor gave up or a tree could not start, 2 for
manifests that are refused (nothing is started then).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from rich.text import Text

from rebeam.errors import TlsError
from rebeam.local.runner import LocalRun, RunOptions, local_problems
from rebeam.local.view import LiveView, Outlet, PlainLog, fd_writer
from rebeam.metrics_scrape import Endpoint, parse_address
from rebeam.spec import load_files
from rebeam.spec.models import Resource

EXIT_REFUSED = 2


def run(args: argparse.Namespace) -> int:
    loaded = load_files(args.files)
    problems = [str(p) for p in loaded.problems] or local_problems(loaded.resources)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print("rebeam: nothing was started", file=sys.stderr)
        return EXIT_REFUSED
    try:
        endpoint = _metrics_endpoint(args.metrics)
    except (ValueError, OSError) as exc:
        print(f"rebeam: {exc}", file=sys.stderr)
        print("rebeam: nothing was started", file=sys.stderr)
        return EXIT_REFUSED
    # Said even with --quiet when the port was left to the system: nothing else tells it.
    if endpoint is not None and (not args.quiet or endpoint.any_port):
        print(f"rebeam: metrics on {endpoint.url}", file=sys.stderr, flush=True)
    try:
        return _run(args, loaded.resources, endpoint)
    finally:
        if endpoint is not None:
            endpoint.close()


def _metrics_endpoint(address: str | None) -> Endpoint | None:
    """The --metrics endpoint, bound before anything starts: a port in use is said at once."""
    if address is None:
        return None
    host, port = parse_address(address)
    try:
        return Endpoint(host, port)
    except OSError as exc:
        raise OSError(f"--metrics: cannot listen on {host}:{port}: {exc.strerror}") from None


def _run(args: argparse.Namespace, resources: list[Resource], endpoint: Endpoint | None) -> int:
    live = not args.quiet and not args.plain and sys.stdout.isatty()
    view: LiveView | None = None
    # Every line rebeam run writes while the tree runs goes through the outlet's thread. The
    # live view prints through its console (which keeps the tree drawn under the lines).
    to_stdout = fd_writer(sys.stdout) if not live else _print_stdout
    to_stderr = fd_writer(sys.stderr) if not live else _print_stderr
    outlet = Outlet(report=to_stderr)
    _log_through(outlet, to_stderr)

    def show_output(path: str, line: str) -> None:
        """Children's output, each line under its child's path (as docker compose does)."""
        if view is not None:
            console = view.console
            outlet.put(line, lambda text: console.print(Text.assemble((f"{path} | ", "dim"), text)))
        else:
            outlet.put(f"{path} | {line}", to_stdout)

    # Quiet drops the children's lines here, after reading them: a child must never block on
    # a pipe nobody reads, nor write into our terminal unasked.
    output = show_output if not args.quiet or args.show_output else _drop_output
    local = LocalRun(resources, _options(args, output, endpoint))

    def on_context(started: LocalRun) -> None:
        nonlocal view
        if not args.quiet:
            outlet.put(started.serving(), to_stderr)
        if live:
            view = LiveView(started.forest)
            view.__enter__()
            started.ctx.lifecycle.listen(view)
        elif not args.quiet:
            started.ctx.lifecycle.listen(PlainLog(outlet, to_stdout))

    try:
        code = asyncio.run(local.run(on_context))
    except TlsError as exc:  # no trusted connection to --nats: nothing was started
        print(f"rebeam: {exc}", file=sys.stderr)
        return 1
    finally:
        outlet.close()
        if view is not None:
            view.__exit__()
    print(f"rebeam: {local.outcome}", file=sys.stderr)
    return code


def _options(
    args: argparse.Namespace, output: Callable[[str, str], None], endpoint: Endpoint | None
) -> RunOptions:
    return RunOptions(
        namespace=args.namespace,
        nats_url=args.nats,
        events_file=args.events,
        python_path=tuple(sorted({str(Path(f).resolve().parent) for f in args.files})),
        output=output,
        prefork=not args.no_prefork,
        issuer_file=args.issuer,
        nats_ca=Path(args.nats_ca) if args.nats_ca else None,
        metrics=endpoint,
    )


def _drop_output(path: str, line: str) -> None:
    """--quiet: a child's line, read and not shown."""


def _print_stdout(line: str) -> None:
    print(line, flush=True)


def _print_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _OutletHandler(logging.Handler):
    """Log records as lines through the outlet: a blocked terminal blocks no log call."""

    def __init__(self, outlet: Outlet, write: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.outlet = outlet
        self.write = write
        self.setFormatter(logging.Formatter("rebeam: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.outlet.put(self.format(record), self.write)
        except Exception:  # a record that cannot be formatted must not end the run
            self.handleError(record)


def _log_through(outlet: Outlet, write: Callable[[str], None]) -> None:
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    root.addHandler(_OutletHandler(outlet, write))
