"""Getting articles out of sources: fetching bytes, then parsing them as feeds, pages or text."""
