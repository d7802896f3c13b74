# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
BEAM_STAMP := $(VENV)/.installed-beam
DATA_DIR ?= data

.PHONY: demo test beam bench-pipeline clean-data

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "jplaylist needs Python 3.11+, found " + sys.version' 
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $(STAMP)

# Optional: Apache Beam, to build datasets on a cluster (README, "Your own
# data"). --no-deps: Beam declares bounds below the pinned set (see the file).
$(BEAM_STAMP): $(STAMP) requirements-beam.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -r requirements-beam.txt
	touch $(BEAM_STAMP)

beam: $(BEAM_STAMP)

# Test-only packages: the references of the parity tests (PyTorch, gensim,
# implicit), the browser driver client and pytest-xdist; and Beam, for the
# Beam builder's test.
$(TEST_STAMP): $(STAMP) $(BEAM_STAMP) requirements-test.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-test.txt
	touch $(TEST_STAMP)

WORKDIR ?= workdirs/demo

demo: $(STAMP)
	$(PY) -m launch.prepare_data --dataset=demo --data_dir=$(DATA_DIR)
	$(PY) -m launch.train --config=configs/demo.py --workdir=$(WORKDIR) \
	    --config.input.data_dir=$(DATA_DIR)
	$(PY) -m launch.evaluate --workdir=$(WORKDIR) --data_dir=$(DATA_DIR) \
	    --split=test,test_heldout_timbre
	$(PY) -m launch.embed --workdir=$(WORKDIR) --dataset=$(DATA_DIR)/music_text/demo/1.0.0 \
	    --split=train,validation,test --output=$(WORKDIR)/library.npz
	$(PY) -m launch.simulate --config=configs/session_study.py:library=demo \
	    --config.library.index=$(WORKDIR)/library.npz --config.library.text_workdir=$(WORKDIR) \
	    --output_dir=$(WORKDIR)/study
	@echo "Play the demo library in a terminal: $(PY) -m launch.play --workdir=$(WORKDIR) --index=$(WORKDIR)/library.npz --text='solo flute'"
	@echo "Or in a browser: $(PY) -m launch.serve --workdir=$(WORKDIR), then open http://127.0.0.1:8000/"
	@echo "A DJ mix of 12 demo tracks: $(PY) -m launch.dj_mix --config=configs/dj_mix.py --index=$(WORKDIR)/library.npz --dataset=$(DATA_DIR)/music_text/demo/1.0.0 --output=$(WORKDIR)/dj_mix"

# pytest-xdist workers: one per core of a 2-core CI machine. `--dist loadfile`
# keeps each file on one worker, so a module fixture (e.g. the multihost
# reference run) runs once; `--no-loadscope-reorder` hands out files in the
# order tests/conftest.py puts them (the long ones first). TEST_WORKERS=0 runs
# in this process.
TEST_WORKERS ?= 2

test: $(TEST_STAMP)
	$(PY) -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

bench-pipeline: $(STAMP)
	$(PY) -m bench.pipeline --data_dir=$(DATA_DIR)

clean-data:
	rm -rf $(DATA_DIR)
