-- SPDX-License-Identifier: MIT
-- spec/declarations_spec.lua -- one place per option: each bundled script
-- returns its declaration (scripts/lib/options.lua), and --help, the bash
-- completion ($(BUILD)/rigatoni-store.bash) and the man page's option lists
-- ($(BUILD)/rigatoni-store.1, and the page in the tree) are made from it.
-- Every option a declaration has must be in each of them, and nothing else;
-- a script of our own (a temporary file) shows that an option added to a
-- declaration reaches all three. The completion is run in bash as bash
-- runs it (COMP_WORDS, COMP_CWORD, the function `complete -p` names).
-- No server: nothing here connects.

local helpers = require "support.helpers"
local quote, capture, read_file, write_file = helpers.quote, helpers.capture,
                                              helpers.read_file, helpers.write_file

package.path = "scripts/?.lua;" .. package.path
local options = require "lib.options"

local ROOT = (capture("pwd"):gsub("\n$", ""))
local BUILD = helpers.BIN:match("^(.*)/[^/]+$")
local COMPLETION = BUILD .. "/rigatoni-store.bash"
local PAGE = BUILD .. "/rigatoni-store.1"
local NAMES = { "list", "export", "import", "migrate", "cleanup", "locks", "stats", "serve" }

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local function sorted_keys(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- The declaration a script file returns.
local function declaration(path)
  local decl = assert(loadfile(path, "t"))()
  assert(options.is_declaration(decl), path .. " returns no declaration")
  return decl
end

-- "--name" of every declared option.
local function declared(decl)
  local list = {}
  for _, o in ipairs(decl.options) do list[#list + 1] = "--" .. o[1] end
  return list
end

-- What bash offers for `words` (the last one is being completed) with the
-- completion file `file` loaded; run in `dir`.
local function complete(file, words, dir)
  local quoted = {}
  for i, w in ipairs(words) do quoted[i] = quote(w) end
  local script = table.concat({
    "source " .. quote(file),
    "spec=$(complete -p rigatoni-store) || exit 3",
    'fn=${spec#*-F }; fn=${fn%% *}',
    "COMP_WORDS=(" .. table.concat(quoted, " ") .. ")",
    "COMP_CWORD=" .. (#words - 1),
    'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}',
    "COMPREPLY=()",
    '"$fn" rigatoni-store "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"',
    'printf "%s\\n" "${COMPREPLY[@]}"',
  }, "\n")
  local out, ok = capture("cd " .. quote(dir or ROOT) .. " && bash --norc --noprofile -c " ..
                          quote(script) .. " 2>&1")
  assert(ok, "completion failed for '" .. table.concat(words, " ") .. "': " .. out)
  local set = {}
  for w in out:gmatch("[^\n]+") do set[w] = true end
  return set
end

-- The option words the completion file lists for a script ("--name", no "=").
local function completion_options(file, name)
  local out, ok = capture("bash --norc --noprofile -c " ..
                          quote("source " .. quote(file) .. "; _rigatoni_store_script_options " .. name))
  assert(ok, out)
  local set = {}
  for w in out:gmatch("%S+") do set[(w:gsub("=$", ""))] = true end
  return set
end

-- The options a man page's generated block of `name` lists (.TP heads), in order.
local function man_block(page, name)
  local block = page:match('\n%.\\" BEGIN OPTIONS OF ' .. name .. ' %([^\n]*\n(.-)%.\\" END OPTIONS OF ' ..
                           name .. "\n")
  assert(block, "no option block for " .. name)
  local list = {}
  for head in block:gmatch("%.TP\n([^\n]+)") do
    list[#list + 1] = (head:match("^\\fB(\\%-\\%-[%w\\%-]+)\\fR"):gsub("\\%-", "-"))
  end
  return list, block
end

-- Runs the generator of the build (contrib/gen-docs.lua on the built host).
local function gen(what, input, scripts)
  local cmd = "env -u RIGATONI_STORE_CONFIG RIGATONI_STORE_SCRIPTS=" .. quote(ROOT .. "/scripts") .. " " ..
              quote(helpers.BIN) .. " -q contrib/gen-docs.lua " .. what .. " " .. quote(input)
  for _, s in ipairs(scripts) do cmd = cmd .. " " .. quote(s) end
  local out, ok = capture(cmd .. " 2>&1")
  assert(ok, "gen-docs " .. what .. " failed: " .. out)
  return out
end

describe("option declarations", function()
  local decls = {}
  setup(function()
    for _, name in ipairs(NAMES) do decls[name] = declaration("scripts/" .. name .. ".lua") end
    assert(read_file(COMPLETION), COMPLETION .. " missing: run make")
    assert(read_file(PAGE), PAGE .. " missing: run make")
  end)

  it("every bundled script returns one, with help for each option", function()
    local files = capture("ls scripts/*.lua")
    local n = 0
    for path in files:gmatch("[^\n]+") do
      local decl = declaration(path)
      n = n + 1
      assert.equal(path:match("([%w_]+)%.lua$"), decl.name)
      for _, o in ipairs(decl.options) do
        assert(type(o.help) == "string" and #o.help > 0, decl.name .. " --" .. o[1] .. " has no help")
      end
      assert(decl.examples and #decl.examples > 0, decl.name .. " has no example")
    end
    assert.equal(#NAMES, n)
  end)

  it("--help shows every declared option and choice", function()
    for _, name in ipairs(NAMES) do
      local code, out, err = helpers.run_host { name, "--help" }
      assert.equal(0, code, err)
      assert.equal(options.help(decls[name]), out)
      for _, o in ipairs(decls[name].options) do
        assert(out:find("\n  %-%-" .. o[1]:gsub("%-", "%%-") .. "%f[^%w%-]"), name .. " --help lacks --" .. o[1])
        for _, c in ipairs(o.choices or {}) do
          assert(out:find(c, 1, true), name .. " --help lacks --" .. o[1] .. " " .. c)
        end
      end
    end
  end)

  it("the built completion offers exactly the declared options, and --help", function()
    for _, name in ipairs(NAMES) do
      local want = set_of(declared(decls[name]))
      want["--help"] = true
      assert.same(sorted_keys(want), sorted_keys(completion_options(COMPLETION, name)))
    end
  end)

  it("the built man page and the page in the tree list exactly the declared options", function()
    local built, source = assert(read_file(PAGE)), assert(read_file("doc/rigatoni-store.1"))
    for _, name in ipairs(NAMES) do
      local listed, block = man_block(built, name)
      assert.same(declared(decls[name]), listed)
      local _, in_tree = man_block(source, name)
      assert(in_tree == block, "doc/rigatoni-store.1: the options of " .. name ..
                               " differ from its declaration: run make doc-options")
    end
  end)

  it("bash completes a script's option, a prefix, a choice and a value after =", function()
    assert.same({ ["--format"] = true }, complete(COMPLETION, { "rigatoni-store", "list", "--form" }))
    assert.same({ ["--older-than"] = true }, complete(COMPLETION, { "rigatoni-store", "-q", "cleanup", "--ol" }))
    assert.same({ json = true, jsonl = true }, complete(COMPLETION, { "rigatoni-store", "list", "--format", "js" }))
    assert.same({ csv = true }, complete(COMPLETION, { "rigatoni-store", "list", "--format", "=", "c" }))
    assert.same({ [":deployment"] = true }, complete(COMPLETION, { "rigatoni-store", "export", "--stream", ":" }))
  end)

  it("a script's run is called without the host: its globals come from the env given", function()
    local servers = require "support.servers"
    local rs = require "rigatoni_store"
    local srv = servers.redis {}
    local store <close> = rs.new { url = srv.url }
    local global_store = rawget(_G, "store")
    local ok, err = pcall(function()
      assert.is_true(store:try_acquire_lock("lk:db:c", "spec-owner", 60))
      local written = {}
      local env = setmetatable({
        store = store,
        config = { lock_prefix = "lk", key_prefix = "rigatoni:resume_token" },
        io = setmetatable({ write = function(...) for _, v in ipairs { ... } do written[#written + 1] = v end end },
                          { __index = io }),
      }, { __index = _G })
      local decl = declaration("scripts/locks.lua")
      assert.equal(0, decl.run(options.parse({ "--mat=db:*" }, decl), env))
      local text = table.concat(written)
      assert.matches("^LOCK ", text)
      assert.matches("\nlk:db:c +[%dms]+ +spec%-owner\n", text)
      assert.equal(global_store, rawget(_G, "store"))   -- the global was neither read nor set
    end)
    store:close()
    srv:stop()
    assert(ok, err)
  end)

  describe("an option added to a declaration", function()
    local dir, script
    setup(function()
      dir = (capture("mktemp -d"):gsub("\n$", ""))
      script = dir .. "/frob.lua"
      write_file(script, [[
local seen = {}
return {
  name = "frob",
  summary = "A script of the spec.",
  options = {
    { "frobnicate-level", "integer", min = 0, max = 9, default = 3, help = "how much" },
    { "colour", "choice", choices = { "red", "green" }, short = "C", help = "which one" },
    { "loud", "flag", short = "l", help = "say it" },
    { "tag", "list", arg = "T", help = "repeatable" },
    { "wait", "duration", help = "how long" },
  },
  args = { { "thing", help = "what" }, { "rest", many = true, optional = true, help = "more" } },
  examples = { "rigatoni-store frob.lua --loud x" },
  run = function(opts, env)
    print(opts.frobnicate_level, opts.colour, opts.loud, table.concat(opts.tag or {}, ","), opts.wait,
          opts.thing, table.concat(opts.rest, ","), env == _G)
    return 0
  end,
}
]])
    end)
    teardown(function()
      if dir then os.execute("rm -rf " .. quote(dir)) end
    end)

    it("is in --help, the completion and the man page", function()
      local code, help = helpers.run_host { script, "--help" }
      assert.equal(0, code)
      assert.matches("\n  %-%-frobnicate%-level N ", help)
      assert.matches("%[%-%-colour red|green%]", help)

      local template = write_file(dir .. "/completion.in",
                                  assert(read_file("contrib/bash-completion/rigatoni-store.in")))
      local file = write_file(dir .. "/completion", gen("completion", template, { script }))
      assert.same({ ["--frobnicate-level"] = true, ["--colour"] = true, ["--loud"] = true, ["--tag"] = true,
                    ["--wait"] = true, ["--help"] = true }, completion_options(file, "frob"))
      assert.same({ ["--frobnicate-level"] = true }, complete(file, { "rigatoni-store", "frob", "--fr" }))
      assert.same({ green = true }, complete(file, { "rigatoni-store", "frob", "--colour", "g" }))
      -- its name is completed where SCRIPT goes (no list of names kept by hand)
      assert.same({ frob = true }, complete(file, { "rigatoni-store", "fro" }))
      assert.same({ frob = true }, complete(file, { "rigatoni-store", "-q", "fro" }))

      local page = write_file(dir .. "/page.1", '.TH X 1\n.SH SCRIPTS\n.SS frob\n' ..
        '.\\" BEGIN OPTIONS OF frob (generated from scripts/frob.lua: make doc-options)\n' ..
        'stale text\n.\\" END OPTIONS OF frob\n')
      local made = gen("man", page, { script })
      assert.same({ "--frobnicate-level", "--colour", "--loud", "--tag", "--wait" }, (man_block(made, "frob")))
      assert.is_nil(made:find("stale", 1, true))
      assert.truthy(made:find("\\fB\\-\\-colour\\fR \\fBred\\fR|\\fBgreen\\fR\n", 1, true))
      -- a script the page has no block for is an error, not a silent gap
      write_file(page, ".TH X 1\n")
      local out, ok = capture("env -u RIGATONI_STORE_CONFIG " .. quote(helpers.BIN) ..
                              " -q contrib/gen-docs.lua man " .. quote(page) .. " " .. quote(script) .. " 2>&1")
      assert.is_false(ok)
      assert.matches("no block for frob", out)
    end)

    it("is read with getopt_long's grammar by the host, run gets the host's globals", function()
      local code, out, err = helpers.run_host { script, "--frob=7", "-lCgreen", "--tag", "a", "--tag=b",
                                                "--wait", "1m30s", "x", "--", "--loud", "-z" }
      assert.equal(0, code, err)
      assert.equal("7\tgreen\ttrue\ta,b\t90.0\tx\t--loud,-z\ttrue\n", out)
      code, out, err = helpers.run_host { script, "x" }
      assert.equal(0, code, err)
      assert.equal("3\tnil\tnil\t\tnil\tx\t\ttrue\n", out)
      for _, case in ipairs {
        { { "--frob", "10", "x" }, "frob: %-%-frobnicate%-level: an integer from 0 to 9 expected, got '10'" },
        { { "-C", "blue", "x" }, "frob: %-C must be one of red, green" },
        { { "-lx" }, "frob: unknown option %-x" },
        { { "--loud=1", "x" }, "frob: %-%-loud takes no value" },
        { { "--wait", "soon", "x" }, "frob: %-%-wait: bad duration 'soon'" },
        { { "--tag" }, "frob: %-%-tag needs a value" },
        { {}, "frob: missing THING" },
      } do
        code, _, err = helpers.run_host { script, table.unpack(case[1]) }
        assert.equal(2, code, table.concat(case[1], " "))
        assert.matches("usage: " .. case[2] .. ".* %(frob %-%-help for usage%)", err)
      end
    end)

    -- What an operator most likely got wrong is refused before run, and
    -- a message never carries the bytes of a word raw (a terminal would
    -- run \27[... sequences; a byte that is not UTF-8 reads \xNN).
    it("refuses forgotten values, empty values, non-decimal integers; shows bytes escaped", function()
      for _, case in ipairs {
        -- a forgotten value: the next option is not taken for it
        { { "--tag", "--loud", "x" }, "frob: %-%-tag needs a value %(got option '%-%-loud'; write %-%-tag=%-%-loud for that value%)" },
        { { "--tag", "--", "x" }, "frob: %-%-tag needs a value %(got option '%-%-'" },
        -- an empty value (an unset $VAR): a filter that matches nothing, a file without a name
        { { "--tag=", "x" }, "frob: %-%-tag: empty value" },
        { { "--tag", "", "x" }, "frob: %-%-tag: empty value" },
        { { "--wait=", "x" }, "frob: %-%-wait: empty value" },
        -- integers are decimal digits: Lua's tonumber would read these
        { { "--frob", "0x5", "x" }, "got '0x5'" },
        { { "--frob", "5e0", "x" }, "got '5e0'" },
        { { "--frob", "5.0", "x" }, "got '5.0'" },
        { { "--frob", " 5", "x" }, "got ' 5'" },
        { { "--frob", "nan", "x" }, "got 'nan'" },
        { { "--frob", "99999999999999999999", "x" }, "got '99999999999999999999'" },
        -- bytes of the user's words are escaped in messages
        { { "--lo\xff\27[2J", "x" }, "frob: unexpected argument '%-%-lo\\xff\\x1b%[2J'" },
        { { "--wait", "\xfe\27]0;x\7", "x" }, "frob: %-%-wait: bad duration '\\xfe\\x1b%]0;x\\x07'" },
        { { "x", "y\27[31m" }, nil },   -- rest takes it: no message
        { { "-l\xff" }, "frob: unknown option %-\\xff" },
      } do
        local code, _, err = helpers.run_host { script, table.unpack(case[1]) }
        if case[2] then
          assert.equal(2, code, table.concat(case[1], " "))
          assert.matches("usage: frob: ", err, 1, true)
          assert.matches(case[2], err)
          assert.is_nil(err:find("[\27\128-\255]"), "raw bytes in: " .. err)
        else
          assert.equal(0, code, err)
        end
      end
      -- a value may start with "-" when attached, or when it is not "--..."
      local code, out, err = helpers.run_host { script, "--tag=--loud", "--tag", "-", "--tag", "-x", "x" }
      assert.equal(0, code, err)
      assert.matches("\t%-%-loud,%-,%-x\t", out)
      -- a repeated option: the last one wins, as in getopt_long tools (a
      -- wrapper's default is overridden by the caller's); a list adds up
      code, out, err = helpers.run_host { script, "-Cred", "--frob=1", "--colour", "green", "--frob", "2", "x" }
      assert.equal(0, code, err)
      assert.matches("^2\tgreen\t", out)
    end)
  end)
end)
