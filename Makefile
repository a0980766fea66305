# clawden — build, test and image targets. `make test` is the test command (CI: .ci/run).
# `make test` needs a running Docker Engine for the integration tests; scripts/ensure-docker.sh
# brings one up (as .ci/run does), it is deliberately not a dependency here.

CARGO ?= cargo
DOCKER ?= docker
DEMO_CONFIG ?= examples/openclaw.json5
DEMO_SESSION ?= group:dev

.PHONY: all test fmt fmt-check clippy build image image-toolbox bench demo clean-containers

all: build

## test: formatting, lints, then every test (unit, integration incl. Docker, doc tests)
test: fmt-check clippy
	scripts/cargo-test.sh

## fmt: reformat the code in place
fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all --check

## clippy: lints on every target, warnings are errors
clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## build: optimised binaries
build:
	$(CARGO) build --release

## image: build clawden-sandbox:minimal (the default sandbox image) with clawden itself
image:
	$(CARGO) run --release -- image build minimal

## image-toolbox: build clawden-sandbox:toolbox from Debian packages (no registry; a few minutes)
image-toolbox:
	images/toolbox/build.sh

## bench: the benchmark harness
bench:
	$(CARGO) build --release --bins
	./target/release/clawden-bench

## demo: build clawden and the minimal image, show the plan for a group session of the example
## config, then bring up its real hardened sandbox container
demo:
	scripts/ensure-docker.sh
	$(MAKE) build
	./target/release/clawden image build minimal
	./target/release/clawden explain --config $(DEMO_CONFIG) --session $(DEMO_SESSION)
	./target/release/clawden ensure --config $(DEMO_CONFIG) --session $(DEMO_SESSION)
	./target/release/clawden exec --config $(DEMO_CONFIG) --session $(DEMO_SESSION) -- 'id; ls /agent; touch /x || echo "root is read-only"'
	./target/release/clawden doctor --config $(DEMO_CONFIG)

## clean-containers: remove every sandbox container clawden created (label clawden.sandbox=1)
clean-containers:
	@ids="$$($(DOCKER) ps -aq --filter label=clawden.sandbox=1)"; \
	if [ -n "$$ids" ]; then $(DOCKER) rm -f $$ids; else echo "no clawden sandbox containers"; fi
