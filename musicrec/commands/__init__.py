"""CLI commands beyond the core ones, one module each.

Every module here defines ``register(sub)``, which adds its sub-parser(s) to the
``musicrec`` parser; :func:`musicrec.cli.build_parser` discovers them in name order.
"""
