-- The development rockspec: builds whatever is checked out.
--   luarocks --lua-version 5.4 make rockspec/llm-scm-0.rockspec
rockspec_format = "3.0"
package = "llm"
version = "scm-0"
source = { url = "git+file://." }
description = {
  summary = "One API over OpenAI, Anthropic, Gemini, Ollama and OpenAI-compatible servers",
  detailed = "Streaming, coroutine tasks, retries with backoff and tool use, on a libcurl C core. "
    .. "Ships llm-mock, an offline server for every provider, with llm.mock for your own tests, "
    .. "and the llm-lua command line.",
  license = "MIT",
}
-- Nothing from a rocks server: the system provides libcurl (Debian: libcurl4-openssl-dev)
-- and Lua 5.4 (liblua5.4-dev), which llm-mock embeds whatever Lua the module is for.
dependencies = { "lua >= 5.1, < 5.5" }
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    LLM_ROCK = "ON",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA = "$(LUA)",
    LIBFLAG = "$(LIBFLAG)",
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
    BINDIR = "$(BINDIR)",
  },
}
test = { type = "busted" }
