# podtap's front door: `make run` starts the agent here, `make test` runs
# every test (unit and real-kernel end-to-end). Both install what they need.

BUILD_DIR ?= build
JOBS ?= $(shell nproc)
RUN_ARGS ?= --listen :4191

# Debian packages the build and the tests need (README says why each).
DEB_PACKAGES := clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev pkg-config cmake make g++ \
	nlohmann-json3-dev libcli11-dev libspdlog-dev libgtest-dev libgmock-dev \
	prometheus iproute2 curl python3 clang-format nginx wrk apache2-utils openssl \
	protobuf-compiler protobuf-compiler-grpc libgrpc++-dev libprotobuf-dev libnghttp2-dev \
	containerd runc containernetworking-plugins busybox-static python3-grpcio python3-grpc-tools \
	nghttp2-client gnutls-bin libclang-rt-14-dev libcurl4-openssl-dev libyaml-cpp-dev \
	nodejs kubectl python3-yaml libre2-dev qemu-system-x86 qemu-system-arm lld zstd nftables libssl-dev \
	libcapstone-dev golang-go golang-google-grpc-dev gnuplot-nox

.PHONY: all deps build test unit e2e kernel-matrix bench soak run demo fmt lint clean unit-asan unit-tsan \
	fuzz-build fuzz-smoke fuzz

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

# Unit tests and the real-kernel end-to-end tests (root), all through ctest;
# then the unit tests under ASan and UBSan, then under TSan, then each fuzz
# target for 20 s.
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 900
	$(MAKE) --no-print-directory unit-asan unit-tsan fuzz-smoke

unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L unit

e2e: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L e2e

# The smoke suite on this machine's kernel, then in QEMU guests of Debian's
# 6.1 and 6.12 kernels (downloaded once to /var/cache/podtap-kernels); the
# table goes to build/kernel-matrix.md (docs/kernel-matrix.md). Root, ~25 min.
kernel-matrix: build
	flock /tmp/podtap-e2e.lock /usr/bin/python3 -B tests/kernel_matrix/run.py \
	  --agent $(abspath $(BUILD_DIR))/podtap-agent --out $(abspath $(BUILD_DIR))/kernel-matrix.md

# Benchmarks (not tests): figures for docs/benchmarks.md. Root, real kernel.
bench: build
	cmake --build $(BUILD_DIR) --target bench
	/usr/bin/python3 bench/http_overhead.py --pairs 5 --seconds 4 --bpf-stats \
	  --hook-floor $(abspath $(BUILD_DIR))/podtap-hook-floor
	PODTAP_AGENT=$(abspath $(BUILD_DIR))/podtap-agent /usr/bin/python3 bench/http_cpu_curve.py \
	  --rates 1000,3000,10000 --seconds 5 --rounds 3 --png docs/http_cpu_curve.png
	PODTAP_AGENT=$(abspath $(BUILD_DIR))/podtap-agent /usr/bin/python3 bench/startup.py --rounds 5
	PODTAP_AGENT=$(abspath $(BUILD_DIR))/podtap-agent /usr/bin/python3 bench/soak.py \
	  --minutes 2 --warmup-minutes 0.75
	PODTAP_AGENT=$(abspath $(BUILD_DIR))/podtap-agent /usr/bin/python3 bench/memory.py --runs 5
	PODTAP_AGENT=$(abspath $(BUILD_DIR))/podtap-agent /usr/bin/python3 bench/churn.py

# The soak at full length (issue #10): 10 minutes after a 2-minute warm-up.
# `make bench` runs a 2-minute one to stay under 10 minutes in all.
soak: build
	PODTAP_AGENT=$(abspath $(BUILD_DIR))/podtap-agent /usr/bin/python3 bench/soak.py --minutes 10

# The unit test binary alone, built with -fsanitize=address,undefined in its
# own tree: any report fails the test that caused it.
ASAN_DIR ?= build-asan
$(ASAN_DIR)/Makefile: CMakeLists.txt
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPODTAP_SANITIZE=ON

unit-asan: deps $(ASAN_DIR)/Makefile
	cmake --build $(ASAN_DIR) -j $(JOBS) --target podtap-unit-tests
	cd $(ASAN_DIR) && ctest --output-on-failure -L unit

# The unit test binary alone, built with -fsanitize=thread in its own tree:
# the threaded tests (HTTP server, query service, taps, mailbox, CRI source)
# fail on any data race TSan sees in podtap's code (tests/tsan.supp says
# why the gRPC and Abseil libraries are left out).
TSAN_DIR ?= build-tsan
$(TSAN_DIR)/Makefile: CMakeLists.txt
	cmake -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPODTAP_TSAN=ON

unit-tsan: deps $(TSAN_DIR)/Makefile
	cmake --build $(TSAN_DIR) -j $(JOBS) --target podtap-unit-tests
	cd $(TSAN_DIR) && \
	  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(abspath tests/tsan.supp) \
	  ctest --output-on-failure -L unit

# libFuzzer targets (tests/fuzz/), built with clang in their own tree.
# `make fuzz` runs each for FUZZ_SECONDS; `make test` for 20 s.
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 600
$(FUZZ_DIR)/Makefile: CMakeLists.txt tests/fuzz/CMakeLists.txt
	cmake -S . -B $(FUZZ_DIR) -DPODTAP_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++

fuzz-build: deps $(FUZZ_DIR)/Makefile
	cmake --build $(FUZZ_DIR) -j $(JOBS)

fuzz-smoke: fuzz-build
	cd $(FUZZ_DIR) && ctest --output-on-failure -L fuzz

fuzz: fuzz-build
	cd $(FUZZ_DIR) && PODTAP_FUZZ_SECONDS=$(FUZZ_SECONDS) ctest -V -L fuzz

run: build
	./$(BUILD_DIR)/podtap-agent $(RUN_ARGS)

# Two pods, real nginx and load between them, the agent, and what the podtap
# CLI says about them, one node's and two agents' merged; cleans up and exits
# by itself (root, ~25 s).
demo: build
	PODTAP_AGENT=$(abspath $(BUILD_DIR))/podtap-agent PODTAP_CLI=$(abspath $(BUILD_DIR))/podtap \
	  /usr/bin/python3 -B tests/e2e/demo.py

fmt:
	clang-format -i agent/*.cc agent/*.h agent/*/*.cc agent/*/*.h exporter/*.cc exporter/*.h tests/unit/*.cc tests/e2e/*.cc \
	  tests/fuzz/*.cc tests/fuzz/*.h tests/*.h cli/*.cc cli/*.h relay/*.cc relay/*.h bench/*.cc tests/kernel_matrix/*.c

lint:
	clang-format --dry-run --Werror agent/*.cc agent/*.h agent/*/*.cc agent/*/*.h exporter/*.cc exporter/*.h tests/unit/*.cc tests/e2e/*.cc \
	  tests/fuzz/*.cc tests/fuzz/*.h tests/*.h cli/*.cc cli/*.h relay/*.cc relay/*.h bench/*.cc tests/kernel_matrix/*.c

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
