# ringmq: build, run, test.
#   make run    build (release) and run with ringmq.example.toml
#   make test   install test deps, build, cargo tests, end-to-end tests
# Other targets: build, lint, fmt, e2e, e2e-mosquitto, conformance.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

CARGO ?= cargo
PYTHON ?= python3
CONFIG ?= ringmq.example.toml
PYTEST_ARGS ?=
# Passed to the tests only: every RINGMQ_* variable in the broker's own
# environment is a config key, so it must not be exported to `make run`.
RINGMQ_BIN ?= $(CURDIR)/target/release/ringmq

.PHONY: all run build test unit e2e e2e-mosquitto lint fmt conformance toolchain test-deps clean tuning-check microbench bench deb

all: build

toolchain:
	@bash scripts/ensure-rust.sh

test-deps:
	@bash scripts/install-test-deps.sh

build: toolchain
	$(CARGO) build --release --workspace

run: build
	@ulimit -l unlimited 2>/dev/null || ulimit -l $$(ulimit -H -l) 2>/dev/null || true; \
	exec ./target/release/ringmq --config $(CONFIG)

# The Debian package (packaging/deb/, docs/install.md): target/deb/ringmq_<version>_<arch>.deb.
deb: build
	@bash scripts/build-deb.sh

# Sequential on purpose (also under make -j): deps, release build, cargo tests, e2e.
test:
	@$(MAKE) --no-print-directory test-deps
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory unit
	@bash tuning/test_tuning.sh
	@$(MAKE) --no-print-directory e2e

unit: toolchain
	$(CARGO) test --release --workspace

e2e:
	@ulimit -l unlimited 2>/dev/null || true; \
	RINGMQ_BIN=$(RINGMQ_BIN) $(PYTHON) -m pytest -q tests/e2e $(PYTEST_ARGS)

# The same end-to-end tests against Debian's mosquitto (checks the tests, not ringmq).
e2e-mosquitto: test-deps
	RINGMQ_TEST_BROKER=mosquitto $(PYTHON) -m pytest -q tests/e2e $(PYTEST_ARGS)

lint: toolchain
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt: toolchain
	$(CARGO) fmt

# Paho interoperability suite: PAHO_TESTING=/path/to/paho.mqtt.testing make conformance
conformance: build
	@bash scripts/conformance.sh all

# Current kernel settings against tuning/sysctl.conf and limits.conf (read-only).
tuning-check:
	python3 tuning/check --connections $${CONNECTIONS:-10000}

# Criterion micro-benchmarks (codec, router, cross-shard fan-out); see docs/microbenchmarks.md.
microbench: toolchain
	$(CARGO) bench

# ringmq beside Mosquitto (FLASHMQ=/path/to/flashmq adds FlashMQ), broker on CPU 0 and the
# load generator on CPU 1, BENCH_REPEAT runs each (3): writes docs/benchmarks.md and its plot.
bench: build
	FLASHMQ="$(FLASHMQ)" $(PYTHON) benches/run/bench.py

clean:
	$(CARGO) clean
