"""The web app: the route table, one module per group of endpoints, the answer cache and the
guard middlewares."""
