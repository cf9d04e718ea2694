"""Storage: the only package with SQL. ``Store`` is the contract (a Protocol) the rest of
digest uses, made of one Protocol per area (``SourcesStore``, ``ArticlesStore`` and the
others of ``contract.py``) for code that needs only some; ``open_store`` gives the store
behind it; the records are what it hands out and takes in, with stored JSON already
decoded. The package's face is every public name of ``contract.py`` and ``records.py``,
and these."""

from digest.store.contract import *  # noqa: F403
from digest.store.opener import open_database as open_database
from digest.store.opener import open_store as open_store
from digest.store.records import *  # noqa: F403
from digest.store.sqlite import SqliteStore as SqliteStore
