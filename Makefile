# facever: `make setup`, `make test`, `make test-fast`, `make bench`, `make gpu-check`, `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast bench gpu-check demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,onnx,faiss]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) benchmarks/run_all.py

# Every CUDA path once, measured (<= 8 min on an H100/H200); a dry CPU version where there is no GPU.
gpu-check: setup
	$(PY) benchmarks/gpu_check.py --out benchmarks/results

demo: setup
	$(VENV)/bin/facever demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
