"""What digest publishes: feeds (Atom, RSS 2.0, JSON Feed), the static site and OPML."""
