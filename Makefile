# The two commands a newcomer runs: `make demo` (the main job) and `make test`.
# Each creates .venv and installs the pinned requirements itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench experiments clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rnnlab demo --out demo-output

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

experiments: $(STAMP)
	for e in $$($(PY) -c "from rnnlab.experiments import available; print(' '.join(available()))"); do \
		$(VENV)/bin/rnnlab experiment $$e --preset fast --out results/$$e || exit 1; done

bench: $(STAMP)
	$(PY) benchmarks/speed.py --out docs/results --reps 3 --loop-reps 1 --cases default,clockwork,step
	$(PY) benchmarks/export_step.py --out docs/results --text ../shared/data/tinyshakespeare.txt

clean:
	rm -rf $(VENV) demo-output .pytest_cache
