rockspec_format = "3.0"
package = "llm"
version = "scm-0"
source = { url = "git+file://." }
description = {
  summary = "One API over OpenAI, Anthropic, Gemini, Ollama and OpenAI-compatible servers",
  detailed = "Streaming, coroutine tasks, retries with backoff and tool use, on a libcurl C core.",
  license = "MIT",
}
dependencies = { "lua >= 5.4", "lua-cjson" }
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
  },
}
test = { type = "busted" }
