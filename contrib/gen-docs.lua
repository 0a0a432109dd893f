-- SPDX-License-Identifier: MIT
-- contrib/gen-docs.lua -- the bash completion and the man page's option
-- lists, made from the scripts' declarations (scripts/lib/options.lua) at
-- build time; the Makefile runs it with the built host:
--
--   rigatoni-store contrib/gen-docs.lua completion TEMPLATE SCRIPT.lua...
--       TEMPLATE with its line "@SCRIPTS@" replaced by the scripts' names,
--       each script's options and how to complete their values
--   rigatoni-store contrib/gen-docs.lua man PAGE SCRIPT.lua...
--       PAGE with the block between
--         .\" BEGIN OPTIONS OF NAME (generated from scripts/NAME.lua: make doc-options)
--         .\" END OPTIONS OF NAME
--       of each script replaced by its option list (a script without its
--       block is an error: the page would not document it)
--
-- Output on stdout. Nothing here knows an option: each comes from the
-- declaration its script returns.

local options = require "lib.options"

local function fail(message)
  io.stderr:write("gen-docs: ", message, "\n")
  os.exit(2)
end

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then fail(err) end
  local text = f:read("a")
  f:close()
  return text
end

-- The declarations of the scripts named on the command line, in order.
local function declarations(first)
  local list = {}
  for i = first, #arg do
    local chunk, err = loadfile(arg[i], "t")
    if not chunk then fail(err) end
    local decl = chunk()
    if not options.is_declaration(decl) then fail(arg[i] .. ": returns no declaration") end
    list[#list + 1] = decl
  end
  return list
end

-- ---------------------------------------------------------------------
-- bash completion
-- ---------------------------------------------------------------------

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- The words a value of o completes to, and the file glob ("" any file), if any.
local function value_completion(o)
  local c = o.complete or {}
  local words = c.words or (o[2] == "choice" and o.choices) or nil
  return words, c.files
end

local function completion(template, decls)
  local names = {}
  for _, d in ipairs(decls) do names[#names + 1] = d.name end
  local lines = {
    "# The bundled scripts, where SCRIPT goes.",
    "_rigatoni_store_scripts=" .. sh_quote(table.concat(names, " ")),
    "",
    "# The options of a bundled script; a trailing = marks one that takes a value.",
    "_rigatoni_store_script_options() {",
    "    case $1 in",
  }
  for _, d in ipairs(decls) do
    local words = {}
    for _, o in ipairs(d.options or {}) do words[#words + 1] = "--" .. o[1] .. (o[2] == "flag" and "" or "=") end
    words[#words + 1] = "--help"
    lines[#lines + 1] = "        " .. d.name .. ") echo " .. sh_quote(table.concat(words, " ")) .. " ;;"
  end
  lines[#lines + 1] = "    esac"
  lines[#lines + 1] = "}"
  lines[#lines + 1] = ""
  lines[#lines + 1] = "# Completes the value of option $2 of bundled script $1; the word is $3."
  lines[#lines + 1] = "_rigatoni_store_script_value() {"
  lines[#lines + 1] = "    case $1 in"
  for _, d in ipairs(decls) do
    local cases = {}
    for _, o in ipairs(d.options or {}) do
      local words, files = value_completion(o)
      local acts = {}
      if words then acts[#acts + 1] = "_rigatoni_store_add -W " .. sh_quote(table.concat(words, " ")) .. ' -- "$3"' end
      if files then acts[#acts + 1] = '_rigatoni_store_files "$3" ' .. sh_quote(files) end
      if #acts > 0 then
        cases[#cases + 1] = "                --" .. o[1] .. ") " .. table.concat(acts, "; ") .. " ;;"
      end
    end
    if #cases > 0 then
      lines[#lines + 1] = "        " .. d.name .. ")"
      lines[#lines + 1] = "            case $2 in"
      for _, c in ipairs(cases) do lines[#lines + 1] = c end
      lines[#lines + 1] = "            esac ;;"
    end
  end
  lines[#lines + 1] = "    esac"
  lines[#lines + 1] = "}"
  local generated = table.concat(lines, "\n")
  local out, n = template:gsub("\n@SCRIPTS@\n", function() return "\n" .. generated .. "\n" end)
  if n ~= 1 then fail("the completion template has no line @SCRIPTS@") end
  return out
end

-- ---------------------------------------------------------------------
-- man page
-- ---------------------------------------------------------------------

-- Text for roff: backslashes and hyphens escaped, no control character
-- at the start of a line.
local function roff(text)
  text = text:gsub("\\", "\\e"):gsub("%-", "\\-")
  return (text:gsub("^([.'])", "\\&%1"):gsub("\n([.'])", "\n\\&%1"))
end

-- A metavariable: words in capitals are italic (what the user fills in),
-- the rest bold (typed as it is): FILE|- -> \fIFILE\fR|\fB\-\fR.
local function roff_metavar(text)
  local parts = {}
  for part in text:gmatch("[^|]+") do
    local font = part:match("^[%u%d_:%[%]]+$") and "I" or "B"
    parts[#parts + 1] = "\\f" .. font .. roff(part) .. "\\fR"
  end
  return table.concat(parts, "|")
end

local function man_options(d)
  local out = {}
  for _, o in ipairs(d.options or {}) do
    local head = "\\fB\\-\\-" .. roff(o[1]) .. "\\fR"
    if o[2] == "choice" then
      local c = {}
      for i, v in ipairs(o.choices) do c[i] = "\\fB" .. roff(v) .. "\\fR" end
      head = head .. " " .. table.concat(c, "|")
    elseif o[2] ~= "flag" then
      head = head .. " " .. roff_metavar(options.metavar(o))
    end
    local help = (o.help or ""):gsub("%s+", " "):gsub("^%l", string.upper)
    if not help:match("[.!?]$") then help = help .. "." end
    if o.default ~= nil and o.show_default ~= false and type(o.default) ~= "table" then
      help = help:gsub("%.$", "") .. " (default " .. tostring(o.default) .. ")."
    end
    out[#out + 1] = ".TP"
    out[#out + 1] = head
    out[#out + 1] = roff(options.wrap(help, 78, ""))
  end
  return table.concat(out, "\n")
end

local function man(page, decls)
  for _, d in ipairs(decls) do
    local begin = '.\\" BEGIN OPTIONS OF ' .. d.name .. ' (generated from scripts/' .. d.name ..
                  '.lua: make doc-options)'
    local finish = '.\\" END OPTIONS OF ' .. d.name
    local a, b = page:find("\n" .. begin .. "\n", 1, true)
    local c = page:find("\n" .. finish .. "\n", b or 1, true)
    if not (a and c) then fail("the page has no block for " .. d.name .. ": " .. begin .. " ... " .. finish) end
    local body = man_options(d)
    page = page:sub(1, b) .. body .. (body ~= "" and "\n" or "") .. page:sub(c + 1)
  end
  return page
end

local what = arg[1]
if what == "completion" then
  io.write(completion(read(arg[2]), declarations(3)))
elseif what == "man" then
  io.write(man(read(arg[2]), declarations(3)))
else
  fail("usage: rigatoni-store contrib/gen-docs.lua completion|man FILE SCRIPT.lua...")
end
