"""Email: composing digests (pure), sending them over SMTP, or writing them to an outbox."""
