# labkit: two commands on a fresh machine -- `make figures` and `make test`.
# Each target first creates/updates the project's own virtual environment in .venv.

PYTHON3 ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.labkit-installed
KERNEL  := labkit
PROFILE ?= default
export MPLBACKEND := agg
export PYTHONHASHSEED := 0

.PHONY: all setup test test-slow test-lab figures grade bench fuzz lab demo clean distclean

all: test

# The environment is rebuilt when the build inputs change; editing ext/*.pyx
# re-compiles the extension (an editable install compiles a snapshot).
$(STAMP): pyproject.toml setup.py $(wildcard ext/*.pyx ext/*.pxd)
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q "setuptools>=68" "cython>=3.0" "numpy>=2.0" wheel
	@# setuptools prints an information-only "Editable installation" banner through pip -q: filtered by its text
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q --no-build-isolation -e ".[dev,bench]"
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (labkit)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# All report figures + figures/metrics.json: notebooks/00_reproduce.ipynb run with papermill
# (`labkit reproduce`); one progress bar over its steps and a summary line. The executed copies
# (00_reproduce and the three notebooks it runs) are in notebooks/executed/$(PROFILE)/.
figures: $(STAMP)
	$(PY) -m labkit reproduce -p profile $(PROFILE)

# Rerun the default profile into a scratch folder and compare with the committed metrics.json
# (executed notebooks: notebooks/executed/grade-default/).
grade: $(STAMP)
	$(PY) -m labkit grade --profile default

bench: $(STAMP)
	$(PY) benchmarks/bench_coder.py
	$(PY) benchmarks/bench_codec.py

# Fuzz the .lkc container + coder, then the full decoder through the networks (bounded time;
# atheris when installed, else a seeded mutator). Prints inputs, time and outcome counts.
# The container run stops at FUZZ_RUNS inputs or FUZZ_SECONDS, whichever comes first.
FUZZ_RUNS ?= 1000000
FUZZ_SECONDS ?= 600
FUZZ_NET_SECONDS ?= 120
fuzz: $(STAMP)
	$(PY) fuzz/fuzz_lkc.py --target container --runs $(FUZZ_RUNS) --seconds $(FUZZ_SECONDS)
	$(PY) fuzz/fuzz_lkc.py --target network --seconds $(FUZZ_NET_SECONDS)

demo: $(STAMP)
	$(PY) -m labkit demo --out demo.png --overwrite

# JupyterLab with the project's config: notebooks are stripped of outputs on save (git stays clean).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --config=etc/jupyter/jupyter_server_config.py --notebook-dir=notebooks \
	    $(if $(filter 0,$(shell id -u)),--allow-root,) $(LAB_ARGS)

# The lab in a real browser (tests/test_lab.py): Debian's chromium, installed with apt when it is
# missing and apt-get is usable (root); otherwise the test skips and says why.
test-lab: $(STAMP)
	@if [ -z "$$LABKIT_CHROMIUM" ] && [ ! -x /usr/lib/chromium/chromium ] && ! command -v chromium >/dev/null 2>&1; then \
	    if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	        mkdir -p build && echo "test-lab: installing Debian's chromium (apt-get; log in build/apt-chromium.log)" && \
	        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >build/apt-chromium.log 2>&1 \
	        || { echo "test-lab: apt-get install chromium failed, see build/apt-chromium.log"; exit 1; }; \
	    else \
	        echo "test-lab: no chromium and no apt-get as root: the browser test will skip (install chromium or set LABKIT_CHROMIUM)"; \
	    fi; \
	fi
	$(PY) -m pytest -q -m lab -s tests/test_lab.py

clean:
	rm -rf build notebooks/executed/*.ipynb notebooks/executed/*/ .pytest_cache .hypothesis labkit/*.so ext/*.c $(STAMP)
	rm -rf runs/smoke figures/smoke  # the smoke profile's weights and figures (other profiles' runs are kept)

distclean: clean
	rm -rf $(VENV) data/cache
