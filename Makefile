# SupportTracker. `make run` and `make test` do their own set-up (scripts/setup.sh) on a fresh
# Debian/Ubuntu machine with Rust.

CARGO ?= cargo
# The private PostgreSQL cluster and other local state live here (unless DATABASE_URL is set).
ST_DATA_DIR ?= ./data
export ST_DATA_DIR
# Arguments for `cargo nextest run` in `make test`, e.g. `make test NEXTEST_ARGS='-p domain'`.
NEXTEST_ARGS ?= --workspace --no-fail-fast -j 2
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
ST_PG := $(TARGET_DIR)/debug/st-pg

.PHONY: all help setup build run test fmt fmt-check lint bench clean-data

all: build

help:
	@echo 'make setup       install missing system packages (PostgreSQL, pkg-config, cargo-nextest)'
	@echo 'make build       release build of supporttracker, replay-tools, st-pg'
	@echo 'make run         set up, then serve on $$ST_LISTEN (default 127.0.0.1:8080)'
	@echo 'make test        set up, then run all tests inside a fresh throwaway PostgreSQL'
	@echo 'make fmt | fmt-check | lint | bench'
	@echo 'make clean-data  stop and delete the private PostgreSQL cluster and $$ST_DATA_DIR'

setup:
	CARGO="$(CARGO)" ./scripts/setup.sh

build:
	$(CARGO) build --release -p web -p replay-tools -p pgboot

# The binary starts (or attaches to) the private PostgreSQL under $(ST_DATA_DIR) itself.
run: setup
	$(CARGO) run --release -p web --bin supporttracker -- serve

# The whole suite runs against one fresh, throwaway cluster (DATABASE_URL set by st-pg; an
# existing DATABASE_URL is used as is). The exit code is the test run's.
# The browser tests need Chromium and chromedriver: the test set-up installs them too.
test:
	ST_NEED_BROWSER=1 CARGO="$(CARGO)" ./scripts/setup.sh
	$(CARGO) build --workspace --bins
	$(ST_PG) exec --fresh --fast -- $(CARGO) nextest run $(NEXTEST_ARGS)

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	$(CARGO) run --release -p replay-tools -- bench

# Refuses (and deletes nothing) while a process still uses the cluster.
clean-data:
	@if [ -d "$(ST_DATA_DIR)" ]; then \
		$(CARGO) build -q -p pgboot --bin st-pg && \
		$(ST_PG) destroy --data-dir "$(ST_DATA_DIR)" && \
		rm -rf "$(ST_DATA_DIR)"; \
	fi
