# The two set-up commands of the README: `make demo` and `make test`. Each creates .venv and installs what is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rs-wsss-installed
# demo knobs: WEIGHTS=random (explicit random backbones) or a weights dir; SCENE=your.tif; CLASSES=set or yaml
WEIGHTS ?=
SCENE   ?=
CLASSES ?= landcover
OUT     ?= demo_out

.PHONY: demo test install plugin-zip clean mutation

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dask,onnx]'
	@# pydensecrf2 builds from source (gcc); without it the CRF is off with one warning
	$(BIN)/python -m pip install -q -e '.[crf]' || echo "warning: pydensecrf2 did not build; dense CRF will be off"
	@touch $@

demo: $(STAMP)
	@$(BIN)/python scripts/demo.py --out $(OUT) --classes $(CLASSES) $(if $(SCENE),--scene $(SCENE)) $(if $(WEIGHTS),--weights $(WEIGHTS))

test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q

# mutation testing of rs_wsss/model (mutmut; minutes per module, not part of CI): MODULES="cam usr" for some
mutation: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[mutation]'
	$(BIN)/python scripts/mutation.py $(MODULES)

plugin-zip:
	$(PYTHON) scripts/plugin_zip.py qgis_plugin/rs_wsss_qgis.zip
	@echo "qgis_plugin/rs_wsss_qgis.zip: QGIS → Plugins → Manage and Install Plugins → Install from ZIP"

clean:
	rm -rf $(OUT) .pytest_cache
