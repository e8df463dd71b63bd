# Thin wrapper over CMake and ctest. `make demo` and `make test` install what is missing first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= 2
LUA        ?= lua5.4

# Debian packages the project needs (DESIGN.md "Toolchain facts"). lua-socket serves the
# specs only: a listener whose accept queue is full (connect timeouts) and free-port probes.
DEBS = build-essential cmake pkg-config lua5.4 liblua5.4-dev libcurl4-openssl-dev lua-cjson \
       lua-busted lua-socket luarocks clang libclang-rt-14-dev valgrind openssl curl ca-certificates \
       lua-check lua-ldoc lua-discount

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

FUZZ_SECONDS ?= 60

.PHONY: all deps build test test-asan test-valgrind test-hosts fuzz demo bench mock clean lint docs

all: build

# Install only what is missing; apt-get update runs once, and only when something is.
deps:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The C tests and every spec under AddressSanitizer + UBSan. The module loads into the
# system lua5.4 only with libasan preloaded; the mock server and curl run without it.
test-asan: deps
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
	sh tools/valgrind.sh

# libFuzzer on the stream framers (clang, ASan, UBSan): whole vs split parses must agree.
# The corpus starts from tests/transcripts, copied to a temporary folder.
fuzz: deps
	@mkdir -p $(BUILD)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Icsrc \
	  tests/fuzz/fuzz_sse.c csrc/sse.c csrc/buf.c -o $(BUILD)/fuzz_sse
	@corpus=$$(mktemp -d) && cp tests/transcripts/*.sse tests/transcripts/*.ndjson $$corpus/ && \
	  $(BUILD)/fuzz_sse -max_total_time=$(FUZZ_SECONDS) -max_len=4096 $$corpus; rc=$$?; rm -rf $$corpus; exit $$rc

demo: build
	@sh tools/demo.sh $(BUILD)

mock: build
	$(BUILD)/llm-mock --port 8080

bench: build
	@sh bench/run.sh $(BUILD)

# luacheck over the library, the specs and the examples (.luacheckrc says what and why).
lint: deps
	luacheck --no-color -q lua spec examples

# The reference (LDoc, config.ld) into $(BUILD)/docs; any LDoc warning fails the target.
docs: deps
	@rm -rf $(BUILD)/docs
	ldoc --fatalwarnings -d $(BUILD)/docs .
	@echo "reference: $(BUILD)/docs/index.html"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
