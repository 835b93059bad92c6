# The user's door: make run | build | test | bench. CMake builds, ctest runs tests.
BUILD      ?= build
TEST_BUILD ?= build-test
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
HOST       ?= 127.0.0.1
PORT       ?= 3000
CTEST_ARGS ?= --output-on-failure -j$(JOBS)

TSAN_BUILD ?= build-tsan

.PHONY: all build run run-cluster test test-asan test-tsan deps deps-test bench clean format

all: build

deps:
	@scripts/install-deps.sh build

deps-test:
	@scripts/install-deps.sh test

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# The "try: curl" banner shows once the server listens (scripts/run.sh);
# a port in use gets a hint to pick another: make run PORT=3001.
run: build
	@scripts/run.sh $(BUILD)/offload $(HOST) $(PORT)

# Scale-out on one machine: a throwaway PostgreSQL (in a temp dir, removed
# at exit) and three nodes on ports PORT..PORT+2 (3000-3002); Ctrl-C stops
# them all. Needs PostgreSQL's server (make deps-test installs it).
run-cluster: build
	@scripts/run-cluster.sh $(BUILD)/offload $(HOST) $(PORT)

# Plain -Werror build + every test, then the whole suite again under
# ASan+UBSan, then the unit tests (ctest -L unit) under TSan.
test: deps-test
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(TEST_BUILD) -j$(JOBS)
	@cd $(TEST_BUILD) && ctest $(CTEST_ARGS)
	@$(MAKE) --no-print-directory test-asan
	@$(MAKE) --no-print-directory test-tsan

test-asan: deps-test
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DOFFLOAD_SANITIZE=address >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)
	@cd $(ASAN_BUILD) && ctest $(CTEST_ARGS)

test-tsan: deps-test
	@cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DOFFLOAD_SANITIZE=thread >/dev/null
	@cmake --build $(TSAN_BUILD) -j$(JOBS)
	@cd $(TSAN_BUILD) && ctest $(CTEST_ARGS) -L unit

# Every claim, side by side with the Node peers and nginx; QUICK=1 for a short run.
bench:
	@scripts/install-deps.sh bench
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)
	@npm ci --prefix bench/peers --no-audit --no-fund --loglevel=error
	@OFFLOAD_BUILD=$(abspath $(BUILD)) python3 bench/run.py $(if $(filter 1,$(QUICK)),--quick --out bench/results/quick,)

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(ASAN_BUILD) $(TSAN_BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')
