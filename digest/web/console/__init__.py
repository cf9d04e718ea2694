"""The operators' console at ``/admin/`` (issue 32): accounts and sessions so far; its pages
are built on the same library calls as the CLI and the JSON API."""
