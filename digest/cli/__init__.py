"""The ``digest`` command line (a thin layer over library calls)."""
