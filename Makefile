# The two set-up commands of the README: `make run` and `make test`. Each creates or
# updates .venv itself, so a fresh machine with Python 3.11+ and make needs nothing else.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench system-packages clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The demo podcasts are spoken by espeak-ng and encoded by ffmpeg; where they cannot be
# installed, seed-demo says so and the bot starts without them.
run: install
	@sh scripts/system-packages.sh run || echo "make run: continuing without the demo podcasts"
	$(BIN)/edoor migrate
	$(BIN)/edoor seed-demo
	$(BIN)/edoor serve

# Debian packages the tests use (headless Chromium for the simulator page test).
system-packages:
	@sh scripts/system-packages.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# The suite runs on every core (pytest-xdist): each worker makes its own template
# databases, and every test its own database, ports and files. TEST_WORKERS=0 runs it in
# one process.
TEST_WORKERS ?= auto
test: install system-packages lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

bench: install
	@sh scripts/system-packages.sh bench
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var
