# podtap's front door: `make run` starts the agent here, `make test` runs
# every test (unit and real-kernel end-to-end). Both install what they need.

BUILD_DIR ?= build
JOBS ?= $(shell nproc)
RUN_ARGS ?= --listen :4191

# Debian packages the build and the tests need (README says why each).
DEB_PACKAGES := clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev pkg-config cmake make g++ \
	libcivetweb-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libgtest-dev libgmock-dev \
	prometheus iproute2 curl python3 clang-format nginx wrk apache2-utils openssl \
	protobuf-compiler protobuf-compiler-grpc libgrpc++-dev libprotobuf-dev libnghttp2-dev \
	containerd runc containernetworking-plugins busybox-static python3-grpcio python3-grpc-tools \
	nghttp2-client gnutls-bin

.PHONY: all deps build test unit e2e bench run fmt lint clean

all: build

# Idempotent: installs only when a package is missing.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else echo "deps: all packages present"; fi

$(BUILD_DIR)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD_DIR)/Makefile
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Unit tests and the real-kernel end-to-end tests (root), all through ctest.
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 900

unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L unit

e2e: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L e2e

# Benchmarks (not tests): figures for docs/benchmarks.md. Root, real kernel.
bench: build
	cmake --build $(BUILD_DIR) --target bench
	/usr/bin/python3 bench/http_overhead.py --pairs 5 --seconds 5 --bpf-stats
	PODTAP_AGENT=$(abspath $(BUILD_DIR))/podtap-agent /usr/bin/python3 bench/soak.py --minutes 10

run: build
	./$(BUILD_DIR)/podtap-agent $(RUN_ARGS)

fmt:
	clang-format -i agent/*.cc agent/*.h exporter/*.cc exporter/*.h tests/unit/*.cc

lint:
	clang-format --dry-run --Werror agent/*.cc agent/*.h exporter/*.cc exporter/*.h tests/unit/*.cc

clean:
	rm -rf $(BUILD_DIR)
