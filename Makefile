# medimg — the commands a user and CI need. Everything installs into .venv with constraints.txt
# (torch==2.13.0: the CPU wheel; any other torch spec pulls multi-GB CUDA wheels).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT ?= demo-output
PYTEST_ARGS ?=

.PHONY: install demo test test-fast bench validate lint clean fuzz

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --upgrade "pip>=24"
	$(PIP) -e ".[all,dl,dev]"
	touch $(STAMP)

install: $(STAMP)

## make demo: install, then run the end-to-end demo on synthetic data and print where the report is
demo: $(STAMP)
	$(BIN)/medimg demo --out $(DEMO_OUT)

## make test: install, then run the test suite (slow end-to-end tests included)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## make bench: measure speed against the libraries users would pick instead; writes BENCHMARKS.md
BENCH_STAMP := $(VENV)/.installed-bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(PIP) -e ".[all,dl,dev,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py

## make validate: checks against outside references (dcm2niix, the DICOM corpus); writes VALIDATION.md
validate: $(STAMP)
	$(BIN)/python validation/run.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks validation

clean:
	rm -rf $(VENV) $(DEMO_OUT) .bench .pytest_cache

## make fuzz: mutate real DICOM files and read them (FUZZ_SECONDS, FUZZ_SEED, FUZZ_OUT); findings in fuzz-findings/
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python tests/fuzzing.py --out $${FUZZ_OUT:-fuzz-findings}
