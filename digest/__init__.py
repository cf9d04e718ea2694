"""digest: news sources in, syndication feeds and weekly email digests out."""

__version__ = "0.1.0"
