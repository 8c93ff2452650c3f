# The two entry points of this repository (see README):
#   make demo   – set up everything and run the end-to-end demo
#   make test   – set up everything and run lint, type check and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv sysdeps demo test lint typecheck pytest bench clean

# Debian packages the sandbox and the tests need; installed only when missing (needs root
# or sudo on a fresh machine). SYSDEPS maps a command to the package that provides it.
SYSDEPS ?= bwrap:bubblewrap setpriv:util-linux dockerd:docker.io mmdebstrap:mmdebstrap chromium:chromium
# The private Docker engine of the tests (own data root and socket; images cached there).
DOCKERD_DIR ?= $(HOME)/.cache/tether-test/dockerd
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

sysdeps:
	@missing=""; for pair in $(SYSDEPS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

demo: $(STAMP) sysdeps
	$(BIN)/python -m tether.demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Starts a private dockerd (and builds the workspace image, cached) for the docker backend
# tests, then stops it by PID. Under CI=true an engine that cannot start fails the run.
pytest: $(STAMP) sysdeps
	@host=$$($(BIN)/python tests/support/dockerd.py start $(DOCKERD_DIR)) || { \
	  echo "the private dockerd did not start (see $(DOCKERD_DIR)/dockerd.log)"; \
	  [ "$$CI" != true ] || exit 1; }; \
	TETHER_TEST_DOCKER_HOST="$$host" $(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 $(PYTEST_ARGS); \
	rc=$$?; $(BIN)/python tests/support/dockerd.py stop $(DOCKERD_DIR); exit $$rc

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m bench.workspace

clean:
	rm -rf $(VENV)
