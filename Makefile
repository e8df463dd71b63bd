# Thin wrapper over CMake and ctest. `make deps` installs the Debian packages; `make build`,
# `make test` and the others check for them first (tools/deps.sh: as root they install what
# is missing and say so, otherwise they name it; sudo only ever runs from `make deps`).
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= 2
LUA        ?= lua5.4
PORT       ?= 0

# Debian packages the project needs (DESIGN.md "Toolchain facts"): BUILD_DEBS to build the
# module and llm-mock, TEST_DEBS for `make test`, DEBS for everything (`make deps`).
# lua-socket serves the specs only: a listener whose accept queue is full (connect timeouts)
# and free-port probes. lua-cjson: the specs' oracle, and llm.json's optional fast path.
BUILD_DEBS = build-essential cmake pkg-config lua5.4 liblua5.4-dev libcurl4-openssl-dev
TEST_DEBS  = $(BUILD_DEBS) lua-cjson lua-busted lua-socket luarocks openssl curl ca-certificates
DEBS = $(TEST_DEBS) clang libclang-rt-14-dev valgrind lua-check lua-ldoc lua-discount

FUZZ_SECONDS ?= 60

.PHONY: all deps build-deps test-deps build test test-asan test-valgrind test-hosts fuzz demo bench mock clean lint docs

all: build

# Install only what is missing; apt-get update runs once, and only when something is.
deps:
	@sh tools/deps.sh install $(DEBS)
build-deps:
	@sh tools/deps.sh ensure $(BUILD_DEBS)
test-deps:
	@sh tools/deps.sh ensure $(TEST_DEBS)

build: build-deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: test-deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The C tests and every spec under AddressSanitizer + UBSan. The module loads into the
# system lua5.4 only with libasan preloaded; the mock server and curl run without it.
test-asan: test-deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLLM_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && LLM_ASAN=1 ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

# The host examples against the mock server (tools/test_hosts.sh): the C frame-loop host
# (examples/host) and the same host linked without -Wl,-E, which must fail to load llm.
test-hosts: build
	sh tools/test_hosts.sh $(BUILD) host noexport

# Specs under valgrind with an aggressive collector (a soak for lifetimes and leaks).
test-valgrind: build
	@sh tools/deps.sh ensure valgrind lua-busted
	sh tools/valgrind.sh

# libFuzzer on the stream framers (clang, ASan, UBSan): whole vs split parses must agree.
# The corpus starts from tests/transcripts, copied to a temporary folder.
fuzz:
	@sh tools/deps.sh ensure clang libclang-rt-14-dev
	@mkdir -p $(BUILD)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Icsrc \
	  tests/fuzz/fuzz_sse.c csrc/sse.c csrc/buf.c -o $(BUILD)/fuzz_sse
	@corpus=$$(mktemp -d) && cp tests/transcripts/*.sse tests/transcripts/*.ndjson $$corpus/ && \
	  $(BUILD)/fuzz_sse -max_total_time=$(FUZZ_SECONDS) -max_len=4096 $$corpus; rc=$$?; rm -rf $$corpus; exit $$rc

demo: build
	@sh tools/demo.sh $(BUILD)

# The mock server in the foreground, on a free port unless PORT is given (it prints it).
mock: build
	$(BUILD)/llm-mock --port $(PORT)

bench: build
	@sh bench/run.sh $(BUILD)

# luacheck over the library, the specs and the examples (.luacheckrc says what and why).
lint:
	@sh tools/deps.sh ensure lua-check
	luacheck --no-color -q lua spec examples

# The reference (LDoc, config.ld) into $(BUILD)/docs; any LDoc warning fails the target.
docs:
	@sh tools/deps.sh ensure lua-ldoc lua-discount
	@rm -rf $(BUILD)/docs
	ldoc --fatalwarnings -d $(BUILD)/docs .
	@echo "reference: $(BUILD)/docs/index.html"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
