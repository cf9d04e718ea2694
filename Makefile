# Two commands on a fresh machine: `make run` and `make test`.
# The virtualenv is created on first use and reinstalled when the dependency files change.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Running needs the package and its optional features (full text, PostgreSQL); testing adds
# the test tools to the same venv. A stamp each: `make run` on a fresh clone installs no
# test tools, and `make test` after it installs only what it lacks.
EXTRAS := fulltext,postgres
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-test bytecode run serve test test-dates lint typecheck unit bench bench-e2e bench-scale bench-due clean system-deps lighthouse bench-scale-db bench-many-feeds bench-pulls-in-a-row bench-api

# Debian packages the end-to-end tests drive: newsboat (a feed reader), chromium, and
# postgresql (the tests start a throwaway server of their own; Debian keeps its binaries
# off PATH, under /usr/lib/postgresql/VERSION/bin); gcc builds the shim that moves the
# clock for test-dates. Without them those tests skip locally and fail in CI. Installing
# needs root.
SYSTEM_PACKAGES := newsboat chromium gcc

# A venv left half-made by an interrupted run (python but no pip) is made again.
$(RUN_STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/pip || { echo "make: creating $(VENV)/"; $(PYTHON) -m venv --clear $(VENV); }
	@echo "make: installing digest[$(EXTRAS)] into $(VENV)/ (first run, or the dependencies changed)"
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

$(TEST_STAMP): $(RUN_STAMP)
	@echo "make: adding the test tools to $(VENV)/"
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -c constraints.txt -e '.[$(EXTRAS),test]'
	touch $@

# Byte-compiled once, as pip does for an installed package: start-up is mostly import time,
# and an environment with PYTHONDONTWRITEBYTECODE set would otherwise compile on every run.
bytecode: $(RUN_STAMP)
	$(BIN)/python -m compileall -q digest

install: $(RUN_STAMP)

install-test: $(TEST_STAMP)

# The service on the embedded default (or ./digest.toml): pulls, weekly digest, and the
# web app on http://127.0.0.1:8080 (feeds at /feed.atom). Ctrl-C stops it.
run: bytecode
	$(BIN)/digest run

# Pull, then serve the feeds and pages on http://127.0.0.1:8080 (Ctrl-C stops).
serve: bytecode
	$(BIN)/digest pull
	$(BIN)/digest serve

lint: $(TEST_STAMP)
	$(BIN)/ruff check digest tests benchmarks
	$(BIN)/ruff format --check digest tests benchmarks

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

unit: $(TEST_STAMP)
	$(BIN)/pytest

test: lint typecheck unit

# The whole suite with the wall clock at another moment (UTC unless it names an offset), for
# every process it starts, PostgreSQL and Chromium included; sleeps and timeouts keep the
# real pace. Its own temporary folder: with the clock moved, pytest would take the folders
# of another session running beside it for stale ones and remove them.
#   make test-dates WHEN='2028-03-26 00:30:00' [PYTEST_ARGS='-k rhythms']
test-dates: $(TEST_STAMP)
	@test -n "$(WHEN)" || { echo "usage: make test-dates WHEN='2028-03-26 00:30:00'" >&2; exit 2; }
	base=$$(mktemp -d) && trap 'rm -rf "$$base"' EXIT && \
	$(BIN)/python -m tests.clock '$(WHEN)' -- $(BIN)/pytest --basetemp="$$base/pytest" $(PYTEST_ARGS)

bench: bench-e2e
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/grouping.py
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/send.py
	$(BIN)/python benchmarks/dkim.py

# Whole processes as a user runs them: pull vs feedparser alone, start-up, send vs the blast
# ceiling; medians of 3 runs with peak memory, ratios side by side.
bench-e2e: bytecode
	$(BIN)/python benchmarks/e2e.py

# Several workers on one PostgreSQL database (a throwaway server of its own): send with 1, 2
# and 4 processes and 1 on SQLite, pulls with 1 and 2 workers.
bench-scale: bytecode
	$(BIN)/python benchmarks/scale.py

# Who is due among 100,000 subscribers on their own rhythms, a tick a minute for a day,
# on SQLite and (with its server binaries) PostgreSQL; medians of 3 runs.
bench-due: bytecode
	$(BIN)/python benchmarks/due.py

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing; \
	  else echo "missing:$$missing (install with: sudo apt-get install$$missing)"; fi; \
	fi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Lighthouse (mobile) on the home, subscribe, region, article and preferences pages of a
# throwaway instance on 127.0.0.1; installs npm's lighthouse into .lighthouse/ on first use
# (Debian's chromium and npm needed). Fails unless every score is 100.
lighthouse: bytecode
	$(BIN)/python benchmarks/lighthouse.py

# Cost against database size (issue 30): databases of 10,000 and 100,000 articles of the
# seeds' text, built through the store and grouped; uncached pages and feeds through
# digest serve, articles --search/--region, a pull of 500 items, side by side with the
# growth. ARGS='--sizes 10000,100000,300000 --reuse --subscribers 100000' for more.
bench-scale-db: bytecode
	$(BIN)/python benchmarks/scale_db.py $(ARGS)

# The JSON API's latency (issue 31): GET /api/v1/articles?limit=50 and its variations on a
# database of 100,000 articles (built as bench-scale-db builds it; ARGS='--reuse' keeps it).
bench-api: bytecode
	$(BIN)/python benchmarks/api.py $(ARGS)

# Many small feeds (issue 30): 1,000 feeds of 20 items on 50 local servers, the first and
# second `digest pull` against lemon24/reader's `update --workers 16` (installed, pinned, in
# a throwaway venv under the temp folder). ARGS='--feeds 300 --runs 5' for others.
bench-many-feeds: bytecode
	$(BIN)/python benchmarks/many_feeds.py $(ARGS)

# Pulls in a row (issue 30): twelve 5,000-item pulls of realistic text into one database,
# all within the story window; each pull's time and peak memory, and the last against the
# first. ARGS='--pulls 6 --items 2000' for a quicker look.
bench-pulls-in-a-row: bytecode
	$(BIN)/python benchmarks/pulls_in_a_row.py $(ARGS)
