"""``python -m digest``: the same command line as the ``digest`` console script."""

from digest.cli.main import main

main()
