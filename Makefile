# Everything the project needs is installed by these targets; see README.md.
PY        ?= python3
VENV      := .venv
VPY       := $(VENV)/bin/python
STACK     := $(VPY) scripts/stack.py
KAFKA_JARS := kafka/libs/.resolved

.PHONY: help venv native lock kafka-jars deps stack-up stack-down stack-status run test test-unit \
        test-integration chaos bench lint clean browser registry docker-engine docker-images \
        test-containers

help:
	@echo "make run    - local stack + demo table/writer + worker + live tail of the output topic"
	@echo "make test   - install what is missing, then run the whole suite (unit + integration)"
	@echo "make chaos  - the long fault-injection run"
	@echo "make bench  - benchmark table"

# Every package from a hashed lock (scripts/lock.py): pip and the build backend, then the
# runtime + test + dev dependencies, then the project itself, editable, without resolving.
LOCKS := requirements.lock requirements-dev.lock requirements-build.lock
$(VENV)/.installed: pyproject.toml $(LOCKS)
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --require-hashes --no-deps -r requirements-build.lock
	$(VPY) -m pip install -q --require-hashes --no-deps -r requirements-dev.lock
	$(VPY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# The native pass (native/, Rust + PyO3, built by maturin from the dev lock) as the
# dynamodb_wire module; app/fastwire.py falls back to pure Python without it.  cargo is
# looked for on PATH, then in ~/.cargo/bin (where rustup puts it).
NATIVE := $(VENV)/.native
CARGO_BIN := $(HOME)/.cargo/bin
$(NATIVE): $(VENV)/.installed native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH:$(CARGO_BIN)" $(VPY) -m pip install -q --no-deps --no-build-isolation ./native
	touch $@

venv: $(VENV)/.installed $(NATIVE)

native: $(NATIVE)

# Re-resolve the locks after a change to pyproject.toml (uv, pinned in the dev extra, keeps
# the locked versions it can); `make lock UPGRADE=1` moves everything to the newest allowed.
lock: venv
	$(VPY) scripts/lock.py $(if $(UPGRADE),--upgrade)
	$(MAKE) --no-print-directory venv

$(KAFKA_JARS): kafka/pom.xml
	rm -rf kafka/libs
	cd kafka && mvn -q -B dependency:copy-dependencies -DoutputDirectory=libs -DincludeScope=runtime
	touch $@

kafka-jars: $(KAFKA_JARS)

# Apicurio Registry (Confluent-compatible Schema Registry) for the KAFKA_RECORD_FORMAT tests:
# its published app jar, built into a runnable Quarkus app by Maven (registry/pom.xml).
REGISTRY_JAR := registry/target/schema-registry-1-runner.jar
$(REGISTRY_JAR): registry/pom.xml registry/settings.xml registry/src/main/resources/META-INF/microprofile-config.properties
	cd registry && mvn -q -B -s settings.xml package
	touch $@

# A Kafka Connect converter for the tests' Connect-style consumer (registry/connect-reader)
CONNECT_READER := registry/connect-reader/libs/.resolved
$(CONNECT_READER): registry/connect-reader/pom.xml registry/settings.xml
	rm -rf registry/connect-reader/libs
	cd registry/connect-reader && mvn -q -B -s ../settings.xml dependency:copy-dependencies -DoutputDirectory=libs
	touch $@

registry: $(REGISTRY_JAR) $(CONNECT_READER)

deps: venv kafka-jars registry

# Headless Chromium + its driver for the browser tests (Debian packages). The file target
# makes this a no-op, and silent, once /usr/bin/chromedriver exists.
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT  := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

$(CHROMEDRIVER):
	@echo "installing chromium + chromium-driver (apt)"
	$(APT) update -qq
	$(APT) install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
	@test -x /usr/bin/chromium && test -x $@

browser: $(CHROMEDRIVER)

# The container tests' Docker engine and images (docker/engine.sh, docker/images.sh):
# Debian's docker.io, docker-compose and debootstrap when missing, dockerd started as root
# when it does not answer; a Debian base image from debootstrap (kept once built), a Python
# image on it, then Kafka (the jars of kafka-jars), moto (the dev lock's) and the product's
# own Dockerfile on that Python. Docker's layer cache makes a rebuild of unchanged inputs quick.
docker-engine:
	docker/engine.sh

docker-images: docker-engine venv kafka-jars
	docker/images.sh all

stack-up: deps
	$(STACK) up

stack-down:
	$(STACK) down

stack-status:
	$(STACK) status

run: deps
	$(VPY) scripts/run_demo.py

# A machine where Docker cannot run still runs every other test: the container tests then
# fail, saying why (tests/containers/conftest.py), and so does make test.
test: deps browser
	$(MAKE) --no-print-directory docker-images || \
	    echo "[docker] no engine or images: the container tests will fail (see above)"
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy --strict app agents
	$(STACK) up
	$(VPY) -m pytest $(PYTEST_ARGS)

# In-process only: no Kafka, no worker or other process, no browser (tests/process has those).
# In parallel, one pytest-xdist process per core (the tests share no files, ports or state
# between processes); `make test-unit XDIST=` runs them in this one process.
XDIST ?= -n auto --dist worksteal
test-unit: venv
	$(VPY) -m pytest tests/unit tests/agents $(XDIST) $(PYTEST_ARGS)

test-integration: deps
	$(STACK) up
	$(VPY) -m pytest tests/integration $(PYTEST_ARGS)

test-containers: docker-images
	$(VPY) -m pytest tests/containers $(PYTEST_ARGS)

chaos: deps
	$(STACK) up
	$(VPY) -m pytest tests/chaos -m chaos --chaos-long -s $(PYTEST_ARGS)

bench: deps
	$(STACK) up
	$(VPY) -m bench

# All three run, whichever fails; mypy's settings are pyproject's [tool.mypy].
LINT_PATHS := app agents tests bench scripts
lint: venv
	@status=0; \
	$(VENV)/bin/ruff check $(LINT_PATHS) || status=1; \
	$(VENV)/bin/ruff format --check $(LINT_PATHS) || status=1; \
	$(VENV)/bin/mypy --strict app agents || status=1; \
	exit $$status

clean: stack-down
	rm -rf .stack
