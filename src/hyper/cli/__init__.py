"""The `hyper` command: one module per command group (hyper.cli.main lists them)."""
