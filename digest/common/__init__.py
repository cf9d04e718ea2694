"""Small pieces every area shares: dates, sanitising and links, redaction, the search and rule
languages, addresses, the guarded HTTP client, bounded bodies, child-process jobs, counters."""
