"""The ``xdp-socket`` command line (layer 4: uses only the public API).

Run it as ``xdp-socket SUBCOMMAND ...`` or ``python -m xdp_socket SUBCOMMAND ...``.

How a subcommand is written
---------------------------

Each subcommand is one module in this package, listed in
:data:`xdp_socket.cli.main.SUBCOMMANDS`. The module provides:

* ``register(subparsers) -> None``: adds its parser with
  ``_common.command_parser(subparsers, NAME, __doc__, EXAMPLES, help)`` and
  calls ``set_defaults(func=run)``. Shared options come from :mod:`._common`
  (``-i/--interface``, ``-q/--queue``, ``-d/--duration``, ``-c/--count``,
  ``--xdp-mode``, ``--json``) so every command spells them the same way.
* ``run(args) -> int``: does the work and returns the exit code
  (0 ok, 1 runtime error, 2 usage error, 130 after Ctrl-C).

Importing a subcommand module must stay cheap: heavy imports (numpy,
pyroute2, the socket code) happen inside ``run``. A module that is not
there yet is skipped by ``main``; any other import error is a bug and is
raised.

Errors: ``run`` may raise :class:`._common.CliError` (message + exit code),
:class:`xdp_socket.XdpError` (its ``str`` names the step, interface and queue),
:class:`xdp_socket.pcap.CaptureFormatError` or :class:`OSError`; ``main``
prints them as one line on stderr, without a traceback.
"""
