# The two commands a new user needs: `make demo` and `make test`.
# Each creates .venv when it is missing and installs bellman (with its dev extras) under
# constraints.txt, which pins the CPU build of PyTorch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean gnugo chromium

# uv installs what pip would (the same versions, checked) in a third of the time: 30 s against
# 90 s for this set into a new venv, measured 2026-12-07 on a 2-core machine. uv reads local
# wheel folders from UV_FIND_LINKS (comma-separated), not from pip's PIP_FIND_LINKS or pip.conf,
# so a machine's own wheels (the CPU build of torch here) are handed on from either.
FIND_LINKS = $${PIP_FIND_LINKS:-$$($(BIN)/python -m pip config get global.find-links 2>/dev/null)}
INSTALL = UV_FIND_LINKS="$$(echo $(FIND_LINKS) | tr ' ' ',')" \
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -c constraints.txt

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(INSTALL) -e '.[dev,ray,serve]'
	touch $(STAMP)

# The tour's language-model stop pretrains on Debian's fortunes; when they are missing and we
# are root with apt-get, install them quietly; otherwise (or on failure) the stop uses pydoc.
FORTUNES := /usr/share/games/fortunes

demo: $(STAMP)
	@if [ ! -d $(FORTUNES) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's fortunes package (the corpus of the tour's last stop)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes; \
		} >/dev/null 2>&1 || echo "could not install fortunes; the tour uses pydoc instead"; \
	fi
	$(BIN)/python demo/tour.py

# Go's expert games and strength benchmarks play GNU Go (`bellman data gnugo`, GTP tests,
# benchmarks/go_vs_gnugo.py); when it is missing and we are root with apt-get, install Debian's
# gnugo quietly; otherwise (or on failure) the tests that need it are skipped, saying why.
gnugo:
	@if ! command -v gnugo >/dev/null 2>&1 && [ ! -x /usr/games/gnugo ] && \
		[ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's gnugo package (Go's expert games and benchmark opponent)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnugo; \
		} >/dev/null 2>&1 || echo "could not install gnugo; the tests that need it are skipped"; \
	fi

# The web app's browser tests drive Debian's chromium headless through Playwright (never a
# downloaded browser); when it is missing and we are root with apt-get, install it quietly;
# otherwise the browser tests are skipped, saying why.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && \
		[ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium package (the web app's browser tests)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		} >/dev/null 2>&1 || echo "could not install chromium; the browser tests are skipped"; \
	fi

# The suite starts ~350 `bellman` processes; where PYTHONDONTWRITEBYTECODE is set (as on this
# project's machines) each one compiled bellman's modules again (~0.1-0.2 s of a core), so the
# bytecode is written once first (Python still reads it under that setting).
test: $(STAMP) gnugo chromium
	$(BIN)/python -m compileall -q src >/dev/null
	PYTHONHASHSEED=0 $(BIN)/python -m pytest -q -n 2  # two workers: CI's two cores

bench: $(STAMP)
	$(INSTALL) -e '.[dev,bench]'
	$(BIN)/python benchmarks/dqn_cartpole.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks demo

clean:
	rm -rf $(VENV) runs
