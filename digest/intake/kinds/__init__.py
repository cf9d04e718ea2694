"""One parser per source kind (``feed``, ``html``, ``text``) and the sniffing of ``auto``;
the registry is :mod:`digest.intake.parsing`."""
