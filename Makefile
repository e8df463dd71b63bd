# Thin wrapper over CMake and ctest. `make deps` installs the Debian packages; `make build`,
# `make test` and the others check for them first (tools/deps.sh: as root they install what
# is missing and say so, otherwise they name it; sudo only ever runs from `make deps`).
# LUA selects the Lua the module is built for: lua5.4 (default, into build/), lua5.3, luajit
# or lua5.1 (into build-lua5.3/, build-luajit/, build-lua5.1/); `make test LUA=luajit` runs
# the specs under that interpreter.
LUA        ?= lua5.4
LUAS        = lua5.4 lua5.3 luajit lua5.1
TEST_ALL_LUAS ?= $(LUAS)
ifeq ($(filter $(LUA),$(LUAS)),)
$(error LUA=$(LUA): choose one of $(LUAS))
endif
BUILD      ?= $(if $(filter lua5.4,$(LUA)),build,build-$(LUA))
ASAN_BUILD ?= build-asan
POLL_BUILD ?= build-poll
JOBS       ?= 2
PORT       ?= 0

# Debian packages the project needs: BUILD_DEBS to build the
# module and llm-mock, TEST_DEBS for `make test`, DEBS for everything (`make deps`).
# lua-socket serves the specs only: a listener whose accept queue is full (connect timeouts)
# and free-port probes. lua-cjson: the specs' JSON oracle (spec/support/json_oracle.lua).
# lua-ldoc and lua-discount (its Markdown): a spec builds the reference as `make docs` does;
# lua-check: a spec runs luacheck as `make lint` does. nghttp2-server: nghttpd, the HTTP/2
# server of spec/http2_spec.lua.
# LUA_DEBS: the other Luas (`make build LUA=...`, `make test-all`), with compat-5.3 for 5.1
# and LuaJIT; Debian's busted, lua-cjson and lua-socket ship for each of them.
LUA_DEBS   = lua5.3 liblua5.3-dev luajit libluajit-5.1-dev lua5.1 liblua5.1-0-dev lua-compat53-dev
BUILD_DEBS = build-essential cmake pkg-config lua5.4 liblua5.4-dev libcurl4-openssl-dev \
             $(if $(filter lua5.4,$(LUA)),,$(LUA_DEBS))
# lua-luv: examples/luv.lua, which the examples spec runs. LUA_DEBS: the specs load the
# library into each of the other Luas even on 5.4.
TEST_DEBS  = $(BUILD_DEBS) lua-cjson lua-busted lua-socket luarocks openssl curl ca-certificates lua-luv nghttp2-server \
             lua-ldoc lua-discount lua-check $(LUA_DEBS)
# HOST_DEBS for `make test-hosts`: Neovim 0.7 and LÖVE 11 (both on LuaJIT), and xvfb-run
# (xvfb, xauth) to give LÖVE an OpenGL window without a display.
HOST_DEBS  = neovim love xvfb xauth lua-luv
# FUZZ_DEBS for `make fuzz`: dpkg-dev unpacks Debian's Lua source for the instrumented Lua.
FUZZ_DEBS  = clang libclang-rt-14-dev dpkg-dev
# BENCH_DEBS for `make bench`: cJSON for the C reference's --json, the pure-Lua peer's
# LuaSocket and lua-cjson, nghttpd for the HTTP/2 case, gnuplot for the chart; linux-perf
# and valgrind to profile (bench/NOTES.md).
BENCH_DEBS = libcjson-dev lua-socket lua-cjson nghttp2-server openssl curl gnuplot-nox linux-perf valgrind
DEBS = $(TEST_DEBS) $(FUZZ_DEBS) $(HOST_DEBS) $(BENCH_DEBS) valgrind $(LUA_DEBS)

FUZZ_SECONDS ?= 60

.PHONY: all deps build-deps test-deps build test test-all test-asan test-valgrind test-hosts fuzz fuzz-deps fuzz-force fuzz-smoke fuzz-merge demo bench bench-limiter mock clean lint docs

all: build

# Install only what is missing; apt-get update runs once, and only when something is.
deps:
	@sh tools/deps.sh install $(DEBS)
build-deps:
	@sh tools/deps.sh ensure $(BUILD_DEBS)
test-deps:
	@sh tools/deps.sh ensure $(TEST_DEBS)

build: build-deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLLM_LUA=$(LUA) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: test-deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole suite on the portable curl_multi_poll backend (no pollfd), as macOS/Windows-less
# CI can test it: the same specs, the loop built with -DLLM_BACKEND=poll.
.PHONY: test-backend-poll
test-backend-poll: test-deps
	@cmake -S . -B $(POLL_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLLM_BACKEND=poll >/dev/null
	@cmake --build $(POLL_BUILD) -j $(JOBS)
	cd $(POLL_BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole suite on Lua 5.4, 5.3 and LuaJIT, and the blocking subset on Lua 5.1 (API §11),
# each in its own build directory; the mock server is Lua 5.4 in all of them.
# TEST_ALL_LUAS="lua5.3 luajit lua5.1" leaves out a 5.4 run already made.
test-all:
	@sh tools/deps.sh ensure $(TEST_DEBS) $(LUA_DEBS)
	@for lua in $(TEST_ALL_LUAS); do \
	  echo "== make test LUA=$$lua"; \
	  $(MAKE) --no-print-directory test LUA=$$lua BUILD=$$( [ $$lua = lua5.4 ] && echo $(BUILD) || echo build-$$lua ) || exit 1; \
	done
	@echo "== make test-hosts"
	@$(MAKE) --no-print-directory test-hosts

# The C tests and every spec under AddressSanitizer + UBSan. The module loads into the
# system lua5.4 only with libasan preloaded; the mock server and curl run without it.
test-asan: test-deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLLM_SANITIZE=ON -DLLM_LUA=lua5.4 >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && LLM_ASAN=1 ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

# The host examples against the mock server (tools/test_hosts.sh): the C frame-loop host
# (examples/host), the same host sandboxed (no os, io, debug) and linked without -Wl,-E
# (which must fail to load llm), the libuv loop (examples/luv.lua), and on the LuaJIT build
# the Neovim plugin (headless) and the LÖVE game (under xvfb-run).
test-hosts: build
	@sh tools/deps.sh ensure $(HOST_DEBS) $(LUA_DEBS)
	@$(MAKE) --no-print-directory build LUA=luajit BUILD=build-luajit
	LLM_BUILD_LUAJIT=$(CURDIR)/build-luajit sh tools/test_hosts.sh $(BUILD) host sandbox noexport luv nvim love

# Specs under valgrind with an aggressive collector (a soak for lifetimes and leaks).
test-valgrind: build
	@sh tools/deps.sh ensure valgrind lua-busted
	sh tools/valgrind.sh

# libFuzzer (clang, ASan, UBSan). FUZZ_TARGET picks the target:
#   sse         the SSE / NDJSON framers: whole vs split parses must agree (tests/fuzz/fuzz_sse.c)
#   json        csrc/json.c against the Lua decoder, and encode/decode stability
#   stream_openai, stream_anthropic, stream_gemini, stream_ollama, stream_responses
#               bytes -> framer -> the provider's Lua decoders -> normalized response or llm.Error
# The Lua targets link a Lua 5.4 built from Debian's source with coverage instrumentation
# (tools/fuzz/build-lua.sh, cached in $(FUZZ_BUILD)/lua). New inputs go to
# $(FUZZ_BUILD)/corpus/<target>, seeded from the kept corpus tests/fuzz/corpus/<target>;
# crashers to $(FUZZ_BUILD)/artifacts. `make fuzz-smoke` runs every target briefly (CI);
# `make fuzz-merge FUZZ_TARGET=...` minimizes both corpora (a greedy set cover of their
# features) into a fresh kept one.
FUZZ_BUILD   ?= build-fuzz
FUZZ_TARGET  ?= sse
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_LUA_TARGETS = json stream_openai stream_anthropic stream_gemini stream_ollama stream_responses
FUZZ_TARGETS = sse $(FUZZ_LUA_TARGETS)
FUZZ_SAN     = -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  = $(FUZZ_SAN) -fsanitize=fuzzer
FUZZ_OPTS    = -max_len=4096 -timeout=10 -rss_limit_mb=1024 -print_final_stats=1

# Lua targets run without LeakSanitizer: the Lua state keeps memory between inputs by design,
# so libFuzzer's per-input leak check would fire a full scan on almost every run.
FUZZ_DICT = $(if $(filter json,$(FUZZ_TARGET)),-dict=tests/fuzz/json.dict,$(if $(filter stream_%,$(FUZZ_TARGET)),-dict=$(FUZZ_BUILD)/$(FUZZ_TARGET).dict))

fuzz: fuzz-deps $(FUZZ_BUILD)/fuzz_$(FUZZ_TARGET)
	@mkdir -p $(FUZZ_BUILD)/corpus/$(FUZZ_TARGET) $(FUZZ_BUILD)/artifacts tests/fuzz/corpus/$(FUZZ_TARGET)
	@p=$(patsubst stream_%,%,$(FUZZ_TARGET)); [ $$p != responses ] || p=openai_responses; \
	  [ ! -f lua/llm/providers/$$p.lua ] || sh tools/fuzz/dict.sh lua/llm/providers/$$p.lua \
	    lua/llm/providers/common.lua > $(FUZZ_BUILD)/$(FUZZ_TARGET).dict
	$(FUZZ_BUILD)/fuzz_$(FUZZ_TARGET) $(FUZZ_OPTS) $(FUZZ_DICT) $(if $(filter sse,$(FUZZ_TARGET)),,-detect_leaks=0) \
	  -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(FUZZ_BUILD)/artifacts/$(FUZZ_TARGET)- \
	  $(FUZZ_BUILD)/corpus/$(FUZZ_TARGET) tests/fuzz/corpus/$(FUZZ_TARGET) \
	  $(if $(filter sse,$(FUZZ_TARGET)),tests/transcripts tests/ndjson)

fuzz-smoke: fuzz-deps
	@mkdir -p $(FUZZ_BUILD)
	@for t in $(FUZZ_TARGETS); do \
	  log=$(FUZZ_BUILD)/smoke-$$t.log; \
	  if $(MAKE) --no-print-directory fuzz FUZZ_TARGET=$$t FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) >$$log 2>&1; then \
	    grep -E '^(Done|stat::number_of_executed_units)' $$log | sed "s/^/fuzz $$t: /"; \
	  else \
	    tail -n 80 $$log; echo "fuzz $$t: FAILED (crasher in $(FUZZ_BUILD)/artifacts)"; exit 1; \
	  fi; \
	done

fuzz-merge: $(FUZZ_BUILD)/fuzz_$(FUZZ_TARGET)
	@rm -rf $(FUZZ_BUILD)/merged && mkdir -p $(FUZZ_BUILD)/merged $(FUZZ_BUILD)/corpus/$(FUZZ_TARGET)
	$(FUZZ_BUILD)/fuzz_$(FUZZ_TARGET) -set_cover_merge=1 -max_len=4096 -detect_leaks=0 $(FUZZ_BUILD)/merged \
	  tests/fuzz/corpus/$(FUZZ_TARGET) $(FUZZ_BUILD)/corpus/$(FUZZ_TARGET)
	rm -rf tests/fuzz/corpus/$(FUZZ_TARGET) && mv $(FUZZ_BUILD)/merged tests/fuzz/corpus/$(FUZZ_TARGET)
	@echo "tests/fuzz/corpus/$(FUZZ_TARGET): $$(ls tests/fuzz/corpus/$(FUZZ_TARGET) | wc -l) files"

$(FUZZ_BUILD)/fuzz_sse: tests/fuzz/fuzz_sse.c csrc/sse.c csrc/buf.c csrc/sse.h csrc/buf.h
	@mkdir -p $(FUZZ_BUILD)
	clang $(FUZZ_CFLAGS) -Icsrc tests/fuzz/fuzz_sse.c csrc/sse.c csrc/buf.c -o $@

fuzz-deps:
	@sh tools/deps.sh ensure $(BUILD_DEBS) $(FUZZ_DEBS)

# Always asks the script, which keeps an instrumented build and retries a fallback one.
$(FUZZ_BUILD)/lua/liblua.a: fuzz-force | fuzz-deps
	@sh tools/fuzz/build-lua.sh $(FUZZ_BUILD)/lua
fuzz-force:

# The core's C files, instrumented once for every Lua target (the portable loop backend:
# the fuzz targets never run the loop).
$(FUZZ_BUILD)/core.a: $(wildcard csrc/*.c csrc/*.h csrc/backend/*) $(FUZZ_BUILD)/lua/liblua.a Makefile
	@rm -rf $(FUZZ_BUILD)/core && mkdir -p $(FUZZ_BUILD)/core
	cd $(FUZZ_BUILD)/core && for f in $(CURDIR)/csrc/*.c $(CURDIR)/csrc/backend/poll.c; do \
	  clang $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c \
	    -I$(CURDIR)/$(FUZZ_BUILD)/lua/include $$(pkg-config --cflags libcurl) $$f || exit 1; done
	ar rcs $@ $(FUZZ_BUILD)/core/*.o

$(addprefix $(FUZZ_BUILD)/fuzz_,$(FUZZ_LUA_TARGETS)): $(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_lua.c \
    $(FUZZ_BUILD)/core.a $(FUZZ_BUILD)/lua/liblua.a
	clang $(FUZZ_CFLAGS) -DFUZZ_TARGET='"$*"' -DFUZZ_ROOT='"$(CURDIR)"' -I$(FUZZ_BUILD)/lua/include \
	  tests/fuzz/fuzz_lua.c $(FUZZ_BUILD)/core.a $(FUZZ_BUILD)/lua/liblua.a \
	  $$(pkg-config --libs libcurl) -lm -o $@

demo: build
	@LLM_LUA=$(LUA) sh tools/demo.sh $(BUILD)

# The mock server in the foreground, on a free port unless PORT is given (it prints it).
mock: build
	$(BUILD)/llm-mock --port $(PORT)

bench:
	@sh tools/deps.sh ensure $(BENCH_DEBS)
	@$(MAKE) --no-print-directory build
	@sh bench/run.sh $(BUILD)

# Case 4 (the limiter against a rate-limited mock, about 35 s): its own run, apart from the table.
bench-limiter:
	@sh tools/deps.sh ensure $(BENCH_DEBS)
	@$(MAKE) --no-print-directory build
	@BENCH_CASES=limiter sh bench/run.sh $(BUILD)

# luacheck over the library, the specs, the examples and the scripts in bin/ (.luacheckrc
# says what and why).
lint:
	@sh tools/deps.sh ensure lua-check
	luacheck --no-color -q lua spec examples $(wildcard bin/*)

# The reference (LDoc, config.ld) into $(BUILD)/docs; any LDoc warning fails the target.
docs:
	@sh tools/deps.sh ensure lua-ldoc lua-discount
	@rm -rf $(BUILD)/docs
	ldoc --fatalwarnings -d $(BUILD)/docs .
	@echo "reference: $(BUILD)/docs/index.html"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build.luarocks $(FUZZ_BUILD) $(POLL_BUILD) $(foreach l,$(filter-out lua5.4,$(LUAS)),build-$(l))
