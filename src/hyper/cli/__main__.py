"""`python -m hyper.cli`: the same as the `hyper` command."""

from hyper.cli.main import main

main()
