# Two commands for a fresh machine (no GPU needed, no internet beyond the package registries):
#   make demo   set up .venv and run the main job on the embedded default (shapeworld)
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The PyPI torch wheel runs on CPU and on CUDA; torchvision must match it exactly or `import open_clip`
# breaks. A CPU-only torch (the `+cpu` local build) has no matching torchvision on PyPI, hence the exclusion.
TORCH_SPEC ?= torch==2.13.0,!=2.13.0+cpu torchvision==0.28.0
DEMO_CONFIG ?= experiments/shapeworld/dreamfields.yaml
PYTEST_ARGS ?= -n 2

.PHONY: setup demo test clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(foreach s,$(TORCH_SPEC),"$(s)")
	$(BIN)/python -m pip install --quiet -e ".[dev,svg]"
	touch $@

demo: setup
	$(BIN)/lightning fit --config $(DEMO_CONFIG)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs wandb .pytest_cache
