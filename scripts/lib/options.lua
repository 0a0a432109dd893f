-- SPDX-License-Identifier: MIT
-- scripts/lib/options.lua -- a script's command line from its declaration.
--
-- Design. A bundled script is a module that returns its declaration:
--
--   return {
--     name = "list", summary = "one line", description = "prose for --help",
--     examples = { "rigatoni-store list --format jsonl" },
--     options = {   -- in the order --help, the man page and completion show
--       { "match", "string", arg = "GLOB", default = "*", help = "..." },
--       { "format", "choice", choices = { "table", "json" }, default = "table", help = "..." },
--       { "yes", "flag", help = "..." },
--     },
--     args = { { "file", help = "...", optional = true, many = true } },  -- operands
--     run = function(opts, env) ... end,
--   }
--
-- Each option is declared once; this file reads the command line by it
-- (getopt_long's grammar: unambiguous long prefixes, --opt=value, --opt
-- value, -h, short letters bundled or with an attached value, "--") and
-- prints --help from it; contrib/gen-docs.lua makes the bash completion and
-- the man page's option lists from the same table at build time. Types:
-- flag, string, list (repeatable: the strings given), integer (1 to
-- 1000000 unless min/max), duration (rs.parse_duration, > 0, at least
-- min when declared, written as a duration: min = "1s"), ttl (a
-- duration Redis takes as a TTL: rs.check_ttl), choice. A default written
-- as text is read as the user's text would be, and shown as written.
-- Option values land in opts under the name with '-' turned into '_'.
--
-- Where getopt_long would take a mistake for a value, this refuses it: a
-- value in the next word that starts with "--" (a forgotten value: the
-- next option; --match=--x gives it), an empty value (an unset $VAR: a
-- filter that matches nothing), an integer that is not decimal digits
-- (tonumber reads 0x10, 1e3, " 5"). A repeated option: the last wins, as
-- in getopt_long tools (a list option adds up). The user's words in a
-- message go through output.text: raw bytes there would reach a terminal.

local M = {}

local rs_module = require "rigatoni_store"
local shown_text = require("lib.output").text

local PROG = "rigatoni-store"
local INT_MIN, INT_MAX = 1, 1000000

local function usage_error(message)
  error(setmetatable({ kind = "usage", message = message, retryable = false, attempts = 0 },
                     { __tostring = function(e) return e.kind .. ": " .. e.message end }), 0)
end

-- The metavariable shown after an option that takes a value.
function M.metavar(o)
  if o.arg then return o.arg end
  local kind = o[2]
  if kind == "choice" then return table.concat(o.choices, "|") end
  if kind == "duration" or kind == "ttl" then return "DURATION" end
  if kind == "integer" then return "N" end
  return "VALUE"
end

local function key_of(name) return (name:gsub("%-", "_")) end

-- option name -> its entry, and the checks a declaration must pass (a
-- broken declaration is the script's bug: a plain error).
local function index(decl)
  if decl._by_name then return decl._by_name, decl._by_short end
  local by_name, by_short = {}, {}
  local kinds = { flag = true, string = true, list = true, integer = true, duration = true,
                  ttl = true, choice = true }
  for _, o in ipairs(decl.options or {}) do
    local name = o[1]
    assert(type(name) == "string" and name:match("^[%w][%w%-]*$"), "bad option name in " .. decl.name)
    assert(kinds[o[2]], decl.name .. ": --" .. name .. ": unknown type " .. tostring(o[2]))
    assert(name ~= "help" and not by_name[name], decl.name .. ": --" .. name .. " declared twice")
    assert(o[2] ~= "choice" or type(o.choices) == "table", decl.name .. ": --" .. name .. " needs choices")
    assert(o[2] ~= "duration" or o.min == nil or (rs_module.parse_duration(o.min) or 0) > 0,
           decl.name .. ": --" .. name .. ": min must be a duration")
    by_name[name] = o
    if o.short then
      assert(o.short:match("^%a$") and o.short ~= "h" and not by_short[o.short],
             decl.name .. ": bad short letter for --" .. name)
      by_short[o.short] = o
    end
  end
  decl._by_name, decl._by_short = by_name, by_short
  return by_name, by_short
end

-- The option `name` stands for: itself, or the one option it is an
-- unambiguous prefix of (getopt_long's rule: --older for --older-than).
function M.option_name(names, name, bad)
  if names[name] then return name end
  local found = {}
  for full in pairs(names) do
    if full:sub(1, #name) == name then found[#found + 1] = "--" .. full end
  end
  table.sort(found)
  if #found == 1 then return found[1]:sub(3) end
  if #found > 1 then bad("option --" .. name .. " is ambiguous (" .. table.concat(found, ", ") .. ")") end
  bad("unknown option --" .. name)
end

-- The value of option o as given (`shown` is how the user named it).
local function convert(o, value, shown, bad)
  local kind = o[2]
  if value == "" then bad(shown .. ": empty value") end
  if kind == "duration" or kind == "ttl" then
    local d = rs_module.parse_duration(value)
    if not d or d <= 0 then bad(shown .. ": bad duration '" .. value .. "' (e.g. 500ms, 30s, 1h30m, 7d, 2w)") end
    if o.min and d < rs_module.parse_duration(o.min) then
      bad(shown .. ": " .. value .. " is below the minimum " .. o.min)
    end
    if kind == "ttl" then
      local ok, why = rs_module.check_ttl(d)
      if not ok then bad(shown .. " " .. value .. ": " .. why) end
    end
    return d
  elseif kind == "integer" then
    local lo, hi = o.min or INT_MIN, o.max or INT_MAX
    local n = value:match("^%-?%d+$") and #value <= 19 and math.tointeger(tonumber(value))
    if not n or n < lo or n > hi then
      bad(string.format("%s: an integer from %d to %d expected, got '%s'", shown, lo, hi, value))
    end
    return n
  elseif kind == "choice" then
    for _, c in ipairs(o.choices) do
      if c == value then return value end
    end
    bad(shown .. " must be one of " .. table.concat(o.choices, ", "))
  end
  return value
end

-- The defaults of a declaration, read as the user's text would be.
function M.defaults(decl)
  local opts = {}
  local function bad(msg) error(decl.name .. ": default of " .. msg, 0) end
  for _, o in ipairs(decl.options or {}) do
    local d = o.default
    if d ~= nil then
      if type(d) == "string" and o[2] ~= "string" and o[2] ~= "list" then d = convert(o, d, "--" .. o[1], bad) end
      opts[key_of(o[1])] = d
    end
  end
  return opts
end

-- argv (a list of strings) -> the options table, or nil after printing
-- --help. Raises a usage error ("NAME: message (NAME --help for usage)")
-- on anything else. Operands go to decl.args' names (or opts.args).
function M.parse(argv, decl)
  local by_name, by_short = index(decl)
  local opts = M.defaults(decl)
  local function bad(msg)
    usage_error(decl.name .. ": " .. shown_text(msg) .. " (" .. decl.name .. " --help for usage)")
  end
  -- --help takes part in prefix matching, as in getopt_long: --hel is help.
  local names = { help = true }
  for name in pairs(by_name) do names[name] = true end
  local operands = {}
  local function set(o, value, shown)
    local key = key_of(o[1])
    if o[2] == "flag" then
      opts[key] = true
    elseif o[2] == "list" then
      if value == "" then bad(shown .. ": empty value") end
      -- a default list is replaced by the first value given, not added to
      if opts[key] == o.default then opts[key] = {} end
      table.insert(opts[key], value)
    else
      opts[key] = convert(o, value, shown, bad)
    end
  end
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then   -- getopt_long's end of options
      table.move(argv, i + 1, #argv, #operands + 1, operands)
      break
    elseif a:sub(1, 2) == "--" then
      local name, inline = a:match("^%-%-([^=]+)=(.*)$")
      if not name then name = a:sub(3) end
      if not name:match("^[%w][%w%-]*$") then bad("unexpected argument '" .. a .. "'") end
      name = M.option_name(names, name, bad)
      if name == "help" then
        if inline then bad("--help takes no value") end
        io.write(M.help(decl))
        return nil
      end
      local o = by_name[name]
      if o[2] == "flag" then
        if inline then bad("--" .. name .. " takes no value") end
        set(o)
      else
        if not inline then
          i = i + 1
          inline = argv[i]
          if inline == nil then bad("--" .. name .. " needs a value") end
          if inline:sub(1, 2) == "--" then
            bad(string.format("--%s needs a value (got option '%s'; write --%s=%s for that value)",
                              name, inline, name, inline))
          end
        end
        set(o, inline, "--" .. name)
      end
    elseif a:match("^%-.") then
      -- short letters: -h, bundled flags (-yq), an attached value (-n5)
      local j = 2
      while j <= #a do
        local letter = a:sub(j, j)
        if letter == "h" then
          io.write(M.help(decl))
          return nil
        end
        local o = by_short[letter]
        if not o then bad("unknown option -" .. letter) end
        if o[2] == "flag" then
          set(o)
          j = j + 1
        else
          local value = a:sub(j + 1)
          if value == "" then
            i = i + 1
            value = argv[i]
            if value == nil then bad("-" .. letter .. " needs a value") end
            if value:sub(1, 2) == "--" then
              bad(string.format("-%s needs a value (got option '%s'; write -%s%s for that value)",
                                letter, value, letter, value))
            end
          end
          set(o, value, "-" .. letter)
          break
        end
      end
    else
      operands[#operands + 1] = a
    end
    i = i + 1
  end
  -- Operands: each declared one takes one (or, `many`, all that are left).
  local args, at = decl.args or {}, 1
  for _, d in ipairs(args) do
    local key = key_of(d[1])
    if d.many then
      opts[key] = table.move(operands, at, #operands, 1, {})
      at = #operands + 1
      if #opts[key] == 0 and not d.optional then bad("missing " .. d[1]:upper()) end
    else
      if operands[at] == nil and not d.optional then bad("missing " .. d[1]:upper()) end
      opts[key] = operands[at]
      at = at + 1
    end
  end
  if operands[at] ~= nil then bad("unexpected argument '" .. operands[at] .. "'") end
  return opts
end

-- ---------------------------------------------------------------------
-- --help
-- ---------------------------------------------------------------------

-- `text` with its white space folded, cut into lines of at most `width`
-- columns, each after `indent` (the first after `first` when given).
function M.wrap(text, width, indent, first)
  local lines, line = {}, first or indent
  local empty = true
  for word in text:gmatch("%S+") do
    if not empty and #line + 1 + #word > width then
      lines[#lines + 1] = line
      line, empty = indent, true
    end
    line = line .. (empty and "" or " ") .. word
    empty = false
  end
  lines[#lines + 1] = line
  return table.concat(lines, "\n")
end

-- "--match GLOB" (and "-m, " before it for a short letter).
function M.option_label(o)
  local label = (o.short and ("-" .. o.short .. ", ") or "") .. "--" .. o[1]
  if o[2] ~= "flag" then label = label .. " " .. M.metavar(o) end
  return label
end

-- The option's help with its default, as one paragraph.
function M.option_help(o)
  local text = o.help or ""
  if o.default ~= nil and o.show_default ~= false and type(o.default) ~= "table" then
    text = text .. " (default " .. tostring(o.default) .. ")"
  end
  return text
end

-- "[--match GLOB]" for each option, in order (a choice with its
-- choices), then the operands.
function M.synopsis_words(decl)
  local words = {}
  for _, o in ipairs(decl.options or {}) do
    local label = "--" .. o[1]
    if o[2] == "choice" then label = label .. " " .. table.concat(o.choices, "|")
    elseif o[2] ~= "flag" then label = label .. " " .. M.metavar(o) end
    words[#words + 1] = "[" .. label .. "]" .. (o[2] == "list" and "..." or "")
  end
  for _, d in ipairs(decl.args or {}) do
    local w = d[1]:upper() .. (d.many and "..." or "")
    words[#words + 1] = d.optional and ("[" .. w .. "]") or w
  end
  return words
end

function M.help(decl)
  if decl.usage then return decl.usage end   -- cli.parse's scripts: their own text
  local lead = "usage: " .. PROG .. " [-c FILE] " .. decl.name
  -- a word of the synopsis is never cut: its blanks are NULs while wrapping
  local words = M.synopsis_words(decl)
  for i, w in ipairs(words) do words[i] = w:gsub(" ", "\0") end
  local synopsis = M.wrap(table.concat(words, " "), 78, (" "):rep(22), lead .. " "):gsub("%z", " ")
  local out = { synopsis, "" }
  if decl.summary then out[#out + 1] = M.wrap(decl.summary, 76, ""); out[#out + 1] = "" end
  local rows = {}
  for _, o in ipairs(decl.options or {}) do rows[#rows + 1] = { M.option_label(o), M.option_help(o) } end
  for _, d in ipairs(decl.args or {}) do rows[#rows + 1] = { d[1]:upper(), d.help or "" } end
  rows[#rows + 1] = { "-h, --help", "this help" }
  local col = 0
  for _, r in ipairs(rows) do col = math.max(col, #r[1]) end
  col = math.min(col, 22) + 4
  for _, r in ipairs(rows) do
    local head = "  " .. r[1]
    if #head + 2 > col then   -- a long label: its help on the next line
      out[#out + 1] = head
      head = ""
    end
    out[#out + 1] = M.wrap(r[2], 78, (" "):rep(col), head .. (" "):rep(col - #head))
  end
  if decl.description then
    out[#out + 1] = ""
    out[#out + 1] = (decl.description:gsub("^\n+", ""):gsub("\n+$", ""))
  end
  if decl.examples and #decl.examples > 0 then
    out[#out + 1] = ""
    for _, e in ipairs(decl.examples) do out[#out + 1] = "example: " .. e end
  end
  return table.concat(out, "\n") .. "\n"
end

-- ---------------------------------------------------------------------
-- Running a declared script
-- ---------------------------------------------------------------------

-- Whether a chunk's result is a declaration this file runs.
function M.is_declaration(v)
  return type(v) == "table" and type(v.run) == "function" and type(v.name) == "string"
end

-- What the host calls for a script that returned a declaration: its
-- options from argv, then run(opts, env); --help exits 0 without running.
function M.main(decl, argv, env)
  local opts = M.parse(argv, decl)
  if not opts then return 0 end
  return decl.run(opts, env or _G)
end

return M
