"""The web app (Starlette): :mod:`.app` holds the route table, the middlewares and the
lifespan; the endpoints are module-level functions, one module per group (:mod:`.pages`,
:mod:`.health`, :mod:`.subscribe`, :mod:`.webhooks`, :mod:`.websub`; :mod:`.errors` for
what they raise), reading what the app holds from :mod:`.state`; :mod:`.guard` has the
middlewares, :mod:`.cache` the rendered answers, :mod:`.limits` the rate limits and
:mod:`.choices` the subscriber forms' choices."""
