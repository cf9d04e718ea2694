"""The running service: the runner that schedules pulls, digests and sign-ups, the digest's
cron schedule, and the operator's alerts."""
