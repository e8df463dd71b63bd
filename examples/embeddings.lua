-- A tiny semantic search: embed a few sentences once, then find the closest one to each
-- question by cosine similarity. Offline, the mock's vectors come from the words the texts
-- share; a real embedding model also matches meaning ("feline" finds "cat").
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")

local client = common.client(common.default_provider(), { embedding_model = "text-embedding-3-small" })

local sentences = {
  "The cat purrs softly on the warm windowsill.",
  "Stock markets fell sharply after the interest rate announcement.",
  "Fresh basil and tomatoes make a simple summer pasta sauce.",
  "The telescope revealed rings around a distant planet.",
  "Regular exercise strengthens the heart and lungs.",
}
local questions = {
  "Which planet has rings?",
  "What sauce goes with pasta?",
  "Why did the markets drop?",
  "How does exercise help the heart?",
  "Where is the cat sleeping?",
}

local function cosine(a, b)
  local dot, na, nb = 0, 0, 0
  for i = 1, #a do
    dot, na, nb = dot + a[i] * b[i], na + a[i] * a[i], nb + b[i] * b[i]
  end
  if na == 0 or nb == 0 then return 0 end
  return dot / math.sqrt(na * nb)
end

local docs = assert(client:embed(sentences))     -- one call for the whole list
local qs = assert(client:embed(questions))
print(("%d sentences, %d-dimensional vectors from %s (%s input tokens)"):format(#docs.vectors,
  #docs.vectors[1], docs.model, tostring(docs.usage.input_tokens)))

for i, q in ipairs(questions) do
  local best, best_score = nil, -2
  for j, v in ipairs(docs.vectors) do
    local score = cosine(qs.vectors[i], v)
    if score > best_score then best, best_score = j, score end
  end
  print(("%-36s -> %s  (%.2f)"):format(q, sentences[best], best_score))
end
