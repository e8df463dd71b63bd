-- docs/reference.md tells the truth: in its per-provider table a field marked "—" raises for
-- that provider before anything is sent, and any other field is accepted.
local llm = require("llm")

local ROOT = os.getenv("LLM_ROOT") or "."

local F = require("support.fixtures")
local function read(path) return assert(F.read(ROOT .. "/" .. path), "cannot read " .. path) end

-- The column order of the table, as a client of each route.
local ROUTES = { { "openai" }, { "openai", "responses" }, { "anthropic" }, { "gemini" }, { "ollama" } }
local HEADER = "| field | OpenAI Chat | OpenAI Responses | Anthropic | Gemini | Ollama |"

local VALUES = {
  system = "Be brief.", max_tokens = 5, temperature = 0.5, top_p = 0.5, stop = { "\n\n" },
  tool_choice = "auto", parallel_tool_calls = false, reasoning = { effort = "low" },
  response_format = { type = "json_object" }, n = 1, seed = 1, top_k = 1, presence_penalty = 0.5,
  frequency_penalty = 0.5, logprobs = true, top_logprobs = 1, user = "u", metadata = { a = "b" },
  service_tier = "auto", extra = { x = 1 },
}

local function rows()
  local text = read("docs/reference.md")
  local start = assert(text:find(HEADER, 1, true), "no per-provider table")
  local out = {}
  for line in text:sub(start):gmatch("([^\n]*)\n") do
    if line == "" then break end
    local field, rest = line:match("^| `([%w_]+)` |(.*)$")
    if field then
      local cells = {}
      for cell in rest:gmatch("%s*([^|]-)%s*|") do cells[#cells + 1] = cell end
      out[#out + 1] = { field = field, cells = cells }
    end
  end
  return out
end

describe("docs/reference.md", function()
  it("the per-provider table says which fields each provider takes", function()
    local wrong, checked = {}, 0
    for _, row in ipairs(rows()) do
      if VALUES[row.field] ~= nil then
        assert.equal(#ROUTES, #row.cells, row.field)
        for i, route in ipairs(ROUTES) do
          -- A port that refuses: a request that passes the checks fails with nil, err at once.
          local c = llm.client(route[1], { model = "m", base_url = "http://127.0.0.1:9", api_key = "k",
                                           max_retries = 0, api = route[2] })
          local ok = pcall(c.chat, c, { messages = { { role = "user", content = "Hi" } },
                                       [row.field] = VALUES[row.field] })
          local says = row.cells[i] ~= "—"
          if ok ~= says then
            wrong[#wrong + 1] = string.format("%s on %s: the page says %s", row.field,
              table.concat(route, " "), says and "taken" or "raises")
          end
          checked = checked + 1
        end
      end
    end
    assert.are.same({}, wrong)
    assert.is_true(checked >= 80)
  end)
end)
