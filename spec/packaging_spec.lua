-- SPDX-License-Identifier: MIT
-- spec/packaging_spec.lua -- what a Lua developer and an operator install:
-- the rockspec (`luarocks make` of a copy of the source into a temporary
-- tree, the module loaded from it by a fresh lua5.4, the tree's host
-- running its bundled scripts), `make install`/`make uninstall` into a
-- DESTDIR, the man page rendered by `man -l`, and the bash completion.
--
-- What must be documented and completed is read from the code, not listed
-- here: the host's options from parse_args in lua/host.c, the bundled
-- scripts from scripts/*.lua and the declaration each one returns, the INI sections and keys from lua/host_conf.c, the
-- environment variables from getenv() calls in lua/. A new script, option,
-- key or variable without documentation fails here, naming what is missing.

local helpers = require "support.helpers"
local quote, capture, read_file, write_file = helpers.quote, helpers.capture,
                                              helpers.read_file, helpers.write_file

local MAN_SOURCE = "doc/rigatoni-store.1"
-- made by `make` from contrib/bash-completion/rigatoni-store.in and the
-- scripts' declarations (spec/declarations_spec.lua checks it is current)
local COMPLETION = "build/rigatoni-store.bash"
local ROOT = (capture("pwd"):gsub("\n$", ""))
-- make and luarocks run as a user would: no settings of an outer make
local CLEAN_ENV = "env -u PREFIX -u CFLAGS -u MAKEFLAGS -u MFLAGS -u MAKELEVEL"
-- LuaRocks builds for the Lua the Makefile compiles against (pkg-config's),
-- not for the sanitizer interpreter that the ASan run puts first in PATH.
local function luarocks(args, env)
  return CLEAN_ENV .. " " .. (env or "") .. " luarocks --lua-version 5.4 " ..
         '--lua-dir "$(pkg-config --variable=prefix lua5.4)" ' .. args
end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true
end

local function mktemp_dir()
  local root = os.getenv("RS_TEST_ROOT") or os.getenv("TMPDIR") or "/tmp"
  local out, ok = capture("mktemp -d " .. quote(root .. "/packaging.XXXXXX"))
  assert(ok, "mktemp -d failed")
  return (out:gsub("\n$", ""))
end

local function sorted(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

local function version()
  local h = assert(read_file("core/rigatoni_store.h"))
  return assert(h:match('#define RS_VERSION "([^"]+)"'), "RS_VERSION not found")
end

-- Runs a command with stdout and stderr in one log; returns ok, log text.
local function run_logged(cmd, log)
  local ok = sh("(" .. cmd .. ") >" .. quote(log) .. " 2>&1")
  return ok, read_file(log) or ""
end

local function tail(text, n)
  local lines = {}
  for l in text:gmatch("[^\n]*") do lines[#lines + 1] = l end
  return table.concat(lines, "\n", math.max(1, #lines - (n or 30)))
end

-- ---------------------------------------------------------------------
-- What the code says exists
-- ---------------------------------------------------------------------

-- Every option of the host: getopt_long's table and short letters in lua/host.c.
local function host_options()
  local src = assert(read_file("lua/host.c"))
  local longs = assert(src:match("\nstatic const struct option long_options%[%] = {(.-)\n};"),
                       "lua/host.c: long_options not found")
  local shorts = assert(src:match('\nstatic const char short_options%[%] = "([^"]*)";'),
                        "lua/host.c: short_options not found")
  local set = {}
  for name in longs:gmatch('{"([%w%-]+)",') do set["--" .. name] = true end
  for letter in shorts:gmatch("%a") do set["-" .. letter] = true end
  local list = sorted(set)
  assert(#list >= 10, "lua/host.c: too few options found: " .. table.concat(list, " "))
  return list
end

-- name -> the declaration each script returns (scripts/lib/options.lua):
-- its options and their choices.
local function bundled_scripts()
  local out = assert(capture("ls scripts/*.lua"))
  package.path = "scripts/?.lua;" .. package.path
  local scripts = {}
  for path in out:gmatch("[^\n]+") do
    local name = path:match("^scripts/([%w_%-]+)%.lua$")
    local decl = assert(loadfile(path, "t"))()
    assert(type(decl) == "table" and decl.options and decl.run,
           path .. ": expected a module returning its declaration (options, run)")
    local opts, choices = {}, {}
    for _, o in ipairs(decl.options) do
      opts[#opts + 1] = "--" .. o[1]
      if o.choices then choices["--" .. o[1]] = o.choices end
    end
    table.sort(opts)
    -- options: those declared; lib/options.lua adds --help to every script
    scripts[#scripts + 1] = { name = name, options = opts, choices = choices }
  end
  assert(#scripts >= 7, "scripts/: too few bundled scripts found")
  return scripts
end

-- The INI sections and { section, key } pairs of lua/host_conf.c.
local function ini_settings()
  local src = assert(read_file("lua/host_conf.c"))
  local sections = {}
  for s in assert(src:match("sections%[%] = {(.-)}")):gmatch('"([%w_]+)"') do
    sections[#sections + 1] = s
  end
  local keys = {}
  for s, k in assert(src:match("settings%[%] = {(.-)\n};")):gmatch('{"([%w_]+)", "([%w_]+)",') do
    keys[#keys + 1] = { s, k }
  end
  assert(#sections >= 5 and #keys >= 20, "lua/host_conf.c: sections or settings not found")
  return sections, keys
end

-- Variables the host reads with getenv("NAME").
local function env_vars()
  local out = assert(capture("cat lua/*.c"))
  local set = {}
  for v in out:gmatch('getenv%("([%w_]+)"%)') do set[v] = true end
  return sorted(set)
end

-- ---------------------------------------------------------------------
-- Text helpers
-- ---------------------------------------------------------------------

local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- `word` as a whole token: not inside a longer option or name.
local function mentions(text, word)
  return text:find("%f[%w%-_]" .. escape(word) .. "%f[^%w%-_]") ~= nil
end

-- Rendered man page -> { [heading] = text }: the headings are the lines
-- matching pattern (top-level ones start in column 0, sub-sections are
-- indented by three spaces).
local function split_sections(text, pattern)
  local parts, current = {}, nil
  for line in text:gmatch("[^\n]*") do
    local head = line:match(pattern)
    if head then
      current = head
      parts[head] = ""
    elseif current then
      parts[current] = parts[current] .. line .. "\n"
    end
  end
  return parts
end

-- ---------------------------------------------------------------------
-- Bash completion: what the completion function offers for a command line
-- ---------------------------------------------------------------------

-- words: the command line split as bash does (the last one is being
-- completed; "" for a fresh word). Runs in dir. Returns the set offered.
local function complete(words, dir)
  local quoted = {}
  for i, w in ipairs(words) do quoted[i] = quote(w) end
  local script = {
    "source " .. quote(ROOT .. "/" .. COMPLETION),
    "spec=$(complete -p rigatoni-store) || exit 3",
    'fn=${spec#*-F }; fn=${fn%% *}',
    "COMP_WORDS=(" .. table.concat(quoted, " ") .. ")",
    "COMP_CWORD=" .. (#words - 1),
    'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}',
    'COMPREPLY=()',
    '"$fn" rigatoni-store "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"',
    'printf "%s\\n" "${COMPREPLY[@]}"',
  }
  local out, ok = capture("cd " .. quote(dir) .. " && bash --norc --noprofile -c " ..
                          quote(table.concat(script, "\n")) .. " 2>&1")
  assert(ok, "completion failed for '" .. table.concat(words, " ") .. "': " .. out)
  local set = {}
  for w in out:gmatch("[^\n]+") do set[w] = true end
  return set
end

local function offered_missing(offered, wanted)
  local missing = {}
  for _, w in ipairs(wanted) do
    if not offered[w] then missing[#missing + 1] = w end
  end
  return missing
end

-- ---------------------------------------------------------------------

describe("packaging", function()
  local scripts = bundled_scripts()
  local options = host_options()

  describe("the Makefile", function()
    -- Nothing of the module under test: the plain pass runs it once.
    local asan_pass = package.cpath:find("build%-asan") ~= nil
    ;(asan_pass and pending or it)("rebuilds an object when a header it includes changes, and only then (-MMD -MP)", function()
      local dir = mktemp_dir()
      local objs = dir .. "/obj/core/scan.o " .. dir .. "/obj/core/url.o"
      local built, ok = capture(CLEAN_ENV .. " make BUILD=" .. quote(dir) .. " " .. objs .. " 2>&1")
      assert(ok, "building two objects failed:\n" .. built)
      -- scan.c includes seen_set.h, url.c does not
      local plan = capture(CLEAN_ENV .. " make -n -W core/seen_set.h BUILD=" .. quote(dir) ..
                           " " .. objs .. " 2>&1")
      assert.truthy(plan:find("-c core/scan.c", 1, true), plan)
      assert.is_nil(plan:find("-c core/url.c", 1, true), plan)
      -- a header that no object includes is no prerequisite of any
      assert.matches("%-MP", plan)
      sh("rm -rf " .. quote(dir))
    end)
  end)

  describe("the man page rigatoni-store(1)", function()
    local page, sections

    setup(function()
      local out, ok = capture("MANWIDTH=200 LC_ALL=C MAN_KEEP_FORMATTING= man -l " ..
                              quote(MAN_SOURCE) .. " 2>&1")
      assert(ok, "man -l " .. MAN_SOURCE .. " failed: " .. out)
      page = out
      sections = split_sections(page, "^(%u[%u ]+)$")
    end)

    it("is readable in the source tree: no placeholder, the version of RS_VERSION", function()
      local src = assert(read_file(MAN_SOURCE))
      assert.is_nil(src:match("@%u+@"), MAN_SOURCE .. " has a placeholder: " .. tostring(src:match("@%u+@")))
      assert.matches('\n%.TH RIGATONI%-STORE 1 "[^"]*" "rigatoni_store ' .. escape(version()) .. '"', src)
    end)

    it("renders without warnings and has the usual sections", function()
      local warn = capture("LC_ALL=C groff -man -ww -z " .. quote(MAN_SOURCE) .. " 2>&1 >/dev/null")
      assert.equal("", warn)
      local missing = {}
      for _, s in ipairs { "NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SCRIPTS", "CONFIGURATION",
                           "ENVIRONMENT", "FILES", "EXIT STATUS", "SECURITY", "EXAMPLES", "SEE ALSO" } do
        if not sections[s] then missing[#missing + 1] = s end
      end
      assert(#missing == 0, MAN_SOURCE .. ": sections missing: " .. table.concat(missing, ", "))
    end)

    it("documents every option of the host (lua/host.c parse_args)", function()
      local missing = {}
      for _, o in ipairs(options) do
        if not mentions(sections.OPTIONS or "", o) then missing[#missing + 1] = o end
      end
      assert(#missing == 0, MAN_SOURCE .. ": OPTIONS does not document host option(s) " ..
                            table.concat(missing, ", "))
      for _, o in ipairs { "-c", "-u", "-s", "-e", "--check", "--metrics", "-v", "-q", "--version" } do
        assert(mentions(sections.SYNOPSIS or "", o), "SYNOPSIS lacks " .. o)
      end
    end)

    it("documents every bundled script, each with its options and an example", function()
      local subs = split_sections(sections.SCRIPTS or "", "^   (%S+)$")
      local problems = {}
      for _, s in ipairs(scripts) do
        local text = subs[s.name]
        if not text then
          problems[#problems + 1] = "script '" .. s.name .. "' (scripts/" .. s.name ..
                                    ".lua) has no sub-section under SCRIPTS"
        else
          local missing = {}
          for _, o in ipairs(s.options) do
            if not mentions(text, o) then missing[#missing + 1] = o end
            for _, c in ipairs(s.choices[o] or {}) do
              if not mentions(text, c) then missing[#missing + 1] = o .. " " .. c end
            end
          end
          if #missing > 0 then
            problems[#problems + 1] = "script '" .. s.name .. "': undocumented " .. table.concat(missing, ", ")
          end
          if not text:find("rigatoni%-store[^\n]* " .. escape(s.name) .. "%f[^%w_%-]") then
            problems[#problems + 1] = "script '" .. s.name .. "': no example (a 'rigatoni-store ... " ..
                                      s.name .. "' line)"
          end
        end
      end
      assert(#problems == 0, MAN_SOURCE .. ":\n  " .. table.concat(problems, "\n  "))
    end)

    it("documents the INI file: every section and key of lua/host_conf.c, units, ${VAR}", function()
      local text = sections.CONFIGURATION or ""
      local secs, keys = ini_settings()
      local missing = {}
      for _, s in ipairs(secs) do
        if not text:find("\n   [" .. s .. "]\n", 1, true) then missing[#missing + 1] = "[" .. s .. "]" end
      end
      for _, sk in ipairs(keys) do
        -- each key listed under its section's own sub-section
        local head = "\n   %[" .. sk[1] .. "%]\n"
        local part = text:match(head .. "(.-)\n   %S") or text:match(head .. "(.*)$") or ""
        if not mentions(part, sk[2]) then missing[#missing + 1] = sk[1] .. "." .. sk[2] end
      end
      assert(#missing == 0, MAN_SOURCE .. ": CONFIGURATION does not document " .. table.concat(missing, ", "))
      for _, w in ipairs { "${VAR}", "${VAR:-default}", "500ms", "30s", "1h30m", "7d", "2w" } do
        assert(text:find(w, 1, true), "CONFIGURATION lacks " .. w)
      end
    end)

    it("documents the environment, exit status and password handling", function()
      local missing = {}
      for _, v in ipairs(env_vars()) do
        if not mentions(sections.ENVIRONMENT or "", v) then missing[#missing + 1] = v end
      end
      assert(#missing == 0, MAN_SOURCE .. ": ENVIRONMENT does not document " .. table.concat(missing, ", "))
      assert(mentions(sections.ENVIRONMENT, "REDIS_URL"))
      assert(mentions(sections.EXAMPLES or "", "REDIS_URL"))
      for _, code in ipairs { "0", "1", "2" } do
        assert(("\n" .. sections["EXIT STATUS"]):find("\n       " .. code .. "%s"), "EXIT STATUS lacks " .. code)
      end
      assert.matches("password_file", sections.SECURITY)
      assert.matches("ps", sections.SECURITY)
    end)
  end)

  describe("bash completion", function()
    local dir

    setup(function()
      dir = mktemp_dir()
      for _, f in ipairs { "prod.ini", "my site[1].ini", "my site1.ini", "notes.txt", "tokens.jsonl", "fix.lua" } do
        write_file(dir .. "/" .. f, "")
      end
      assert(sh("mkdir " .. quote(dir .. "/conf.d")))
    end)

    teardown(function()
      if dir then sh("rm -rf " .. quote(dir)) end
    end)

    it("offers every bundled script, and .lua files, in the script position", function()
      local offered = complete({ "rigatoni-store", "" }, dir)
      local names = {}
      for i, s in ipairs(scripts) do names[i] = s.name end
      local missing = offered_missing(offered, names)
      assert(#missing == 0, COMPLETION .. " does not offer the script(s) " .. table.concat(missing, ", "))
      assert.is_true(offered["fix.lua"])
      assert.is_nil(offered["notes.txt"])
      local partial = complete({ "rigatoni-store", "-q", "mi" }, dir)
      assert.same({ migrate = true }, partial)
    end)

    it("offers every host option (lua/host.c parse_args)", function()
      local missing = offered_missing(complete({ "rigatoni-store", "-" }, dir), options)
      assert(#missing == 0, COMPLETION .. " does not offer the host option(s) " .. table.concat(missing, ", "))
      assert.same({ ["--check"] = true, ["--config"] = true }, complete({ "rigatoni-store", "--c" }, dir))
    end)

    it("offers every option of each script once the script is named", function()
      local problems = {}
      for _, s in ipairs(scripts) do
        local offered = complete({ "rigatoni-store", "-c", "prod.ini", s.name, "--" }, dir)
        local missing = offered_missing(offered, s.options)
        if not offered["--help"] then missing[#missing + 1] = "--help" end
        if #missing > 0 then problems[#problems + 1] = s.name .. " " .. table.concat(missing, " ") end
        for o, choices in pairs(s.choices) do
          local m = offered_missing(complete({ "rigatoni-store", s.name, o, "" }, dir), choices)
          if #m > 0 then problems[#problems + 1] = s.name .. " " .. o .. " " .. table.concat(m, " ") end
        end
      end
      assert(#problems == 0, COMPLETION .. " does not offer:\n  " .. table.concat(problems, "\n  "))
      -- host options with values are skipped on the way to the script
      assert.same({ ["--match"] = true },
                  complete({ "rigatoni-store", "-u", "redis://h:1", "-s", "redis.ttl=7d", "list", "--ma" }, dir))
    end)

    it("completes formats, also after --format=", function()
      assert.same({ json = true, jsonl = true }, complete({ "rigatoni-store", "list", "--format", "js" }, dir))
      assert.same({ json = true, jsonl = true },
                  complete({ "rigatoni-store", "list", "--format", "=", "js" }, dir))
      assert.same({ keep = true, none = true }, complete({ "rigatoni-store", "import", "--ttl", "" }, dir))
    end)

    it("completes INI files for -c and --to-config, any file for --input and --output", function()
      for _, words in ipairs {
        { "rigatoni-store", "-c", "" }, { "rigatoni-store", "--config", "=", "" },
        { "rigatoni-store", "migrate", "--to-config", "" },
      } do
        local offered = complete(words, dir)
        -- names with spaces or glob characters come back whole, as they are
        assert(offered["prod.ini"] and offered["my site[1].ini"] and offered["my site1.ini"] and
               offered["conf.d"], table.concat(words, " ") .. ": INI files and directories expected")
        assert.is_nil(offered["notes.txt"])
      end
      local input = complete({ "rigatoni-store", "import", "--input", "" }, dir)
      assert.is_true(input["tokens.jsonl"] and input["notes.txt"] and input["-"])
      assert.same({ ["tokens.jsonl"] = true }, complete({ "rigatoni-store", "export", "--output", "to" }, dir))
      assert.same({ ["tokens.jsonl"] = true }, complete({ "rigatoni-store", "--metrics", "to" }, dir))
    end)

    it("completes -s with every section.key of lua/host_conf.c", function()
      local offered = complete({ "rigatoni-store", "-s", "" }, dir)
      local _, keys = ini_settings()
      local wanted = {}
      for i, sk in ipairs(keys) do wanted[i] = sk[1] .. "." .. sk[2] .. "=" end
      local missing = offered_missing(offered, wanted)
      assert(#missing == 0, COMPLETION .. " -s does not offer " .. table.concat(missing, ", "))
      assert.same({ ["redis.pool_size="] = true }, complete({ "rigatoni-store", "-s", "redis.po" }, dir))
    end)

    it("offers nothing after -e: the rest is Lua code and its arguments", function()
      assert.same({}, complete({ "rigatoni-store", "-e", "print(1)", "--c" }, dir))
    end)
  end)

  -- The packages do not use the module under test, so the ASan pass (which
  -- loads build-asan/) leaves them to the plain one: 40 s is enough once.
  local asan_pass = package.cpath:find("build%-asan") ~= nil
  ;(asan_pass and pending or describe)("the Debian packages (make deb)", function()
    it("leave warnings as warnings in a packager's build; make test's builds make them errors", function()
      local plain = capture(CLEAN_ENV .. " make -n -B BUILD=build-n build-n/obj/core/url.o 2>&1")
      assert.matches("%-Wall", plain)
      assert.is_nil(plain:find("-Werror", 1, true))
      local ours = capture(CLEAN_ENV .. " make -n -B WERROR=-Werror BUILD=build-n build-n/obj/core/url.o 2>&1")
      assert.truthy(ours:find("-Werror", 1, true))
      local flags = capture(CLEAN_ENV .. " make -n -B BUILD=build-n CPPFLAGS=-DRS_CPP_MARK " ..
                            "LDFLAGS=-Wl,-z,rs_ld_mark build-n/rigatoni-store 2>&1")
      assert.truthy(flags:find("-DRS_CPP_MARK", 1, true))
      assert.truthy(flags:find("-Wl,-z,rs_ld_mark", 1, true))
    end)

    it("build with dpkg-buildpackage, pass lintian and hardening-check, run from a scratch root", function()
      local dir = mktemp_dir()
      local ok, out = run_logged("sh spec/support/deb-check.sh " .. quote(dir .. "/deb"), dir .. "/deb.log")
      assert(ok, "make deb failed:\n" .. tail(out, 60))
      assert.matches("\ndeb: ok\n", out)
      assert.matches("rigatoni%-store " .. escape(version()), out)
      sh("rm -rf " .. quote(dir))
    end)
  end)

  describe("make install / make uninstall", function()
    local dest

    setup(function()
      dest = mktemp_dir()
    end)

    teardown(function()
      if dest then sh("rm -rf " .. quote(dest)) end
    end)

    it("installs page, completion, host, scripts, module; uninstall removes exactly those", function()
      local prefix = dest .. "/usr/local"
      -- a file of someone else's in the same folders survives uninstall
      assert(sh("mkdir -p " .. quote(prefix .. "/share/man/man1") .. " " .. quote(prefix .. "/bin")))
      write_file(prefix .. "/share/man/man1/other.1", ".TH OTHER 1\n")
      write_file(prefix .. "/bin/other", "")
      local log = dest .. ".log"
      local ok, out = run_logged(CLEAN_ENV .. " make install DESTDIR=" .. quote(dest), log)
      assert(ok, "make install failed:\n" .. tail(out))

      local expected = { "bin/rigatoni-store", "share/man/man1/rigatoni-store.1",
                         "share/bash-completion/completions/rigatoni-store",
                         "lib/lua/5.4/rigatoni_store.so", "include/rigatoni_store.h",
                         "lib/pkgconfig/rigatoni_store.pc", "share/rigatoni_store/scripts/lib/cli.lua",
                         "share/lua/5.4/rigatoni_store/cqueues.lua", "share/lua/5.4/rigatoni_store/luv.lua",
                         "share/lua/5.4/rigatoni_store/adapter.lua", "share/lua/5.4/rigatoni_store/loop_lease.lua" }
      for _, s in ipairs(scripts) do
        expected[#expected + 1] = "share/rigatoni_store/scripts/" .. s.name .. ".lua"
      end
      for _, f in ipairs(expected) do
        assert(read_file(prefix .. "/" .. f), "make install did not install " .. f)
      end
      assert.equal(read_file(COMPLETION),
                   read_file(prefix .. "/share/bash-completion/completions/rigatoni-store"))

      -- the shared library: full version on the file, SONAME the ABI number
      local lib = prefix .. "/lib/librigatoni_store.so"
      assert.equal("librigatoni_store.so.0\n", capture("readlink " .. quote(lib)))
      assert.equal("librigatoni_store.so." .. version() .. "\n", capture("readlink " .. quote(lib .. ".0")))
      local dynamic = capture("readelf -d " .. quote(lib .. "." .. version()))
      assert.matches("%(SONAME%)%s+Library soname: %[librigatoni_store%.so%.0%]", dynamic)
      -- never unmapped by dlclose: a read-ahead or lease thread may still be
      -- returning through its code after the store's close (Makefile NODELETE)
      assert.matches("Flags:[^\n]*NODELETE", dynamic)
      assert.matches("Flags:[^\n]*NODELETE", (capture("readelf -d " .. quote(prefix .. "/lib/lua/5.4/rigatoni_store.so"))))
      assert.truthy(read_file(prefix .. "/lib/pkgconfig/rigatoni_store.pc"):find(
                    "\nRequires.private: hiredis >= 1.0, hiredis_ssl >= 1.0, libbson-1.0\n", 1, true))
      -- the installed page carries the version, the installed host finds its scripts
      local man = capture("MANWIDTH=200 LC_ALL=C man -l " .. quote(prefix .. "/share/man/man1/rigatoni-store.1"))
      assert.truthy(man:find("rigatoni_store " .. version(), 1, true))
      assert.truthy(man:find("/usr/local/share/rigatoni_store/scripts", 1, true))
      local help, ran = capture("env -u RIGATONI_STORE_SCRIPTS " .. quote(prefix .. "/bin/rigatoni-store") ..
                                " stats --help 2>&1")
      assert(ran, help)
      assert.matches("usage: rigatoni%-store %[%-c FILE%] stats", help)

      ok, out = run_logged(CLEAN_ENV .. " make uninstall DESTDIR=" .. quote(dest), log)
      assert(ok, "make uninstall failed:\n" .. tail(out))
      local left = capture("cd " .. quote(dest) .. " && find . ! -type d | sort")
      assert.equal("./usr/local/bin/other\n./usr/local/share/man/man1/other.1\n", left)
      assert.equal("", capture("find " .. quote(prefix .. "/share") .. " -name 'rigatoni*'"))
      os.remove(log)
    end)
  end)

  describe("the rockspec", function()
    local work, tree, rockspec, built, log

    setup(function()
      work = mktemp_dir()
      tree = work .. "/tree"
      rockspec = "rigatoni_store-" .. version() .. "-1.rockspec"
      -- A fresh copy of the source (no build output), as a clone would be.
      assert(sh("mkdir " .. quote(work .. "/src") .. " && for f in * .[!.]*; do case $f in " ..
                "build|build-*|.git) ;; *) cp -R \"$f\" " .. quote(work .. "/src/") .. ";; esac; done"))
      local ok
      ok, log = run_logged("cd " .. quote(work .. "/src") .. " && " ..
                           -- no rocks server is reached: lua-cjson is Debian's here
                           luarocks("make --deps-mode=none --tree " .. quote(tree) .. " " .. rockspec,
                                    "MAKEFLAGS=-j2"),
                           work .. "/luarocks.log")
      built = ok
      -- The tree must stand on its own: nothing may point back into the copy.
      if ok then sh("rm -rf " .. quote(work .. "/src")) end
    end)

    teardown(function()
      if work then sh("rm -rf " .. quote(work)) end
    end)

    it("is named after RS_VERSION and builds with luarocks make into a tree", function()
      local text = read_file(rockspec)
      assert(text, rockspec .. " missing (the version comes from RS_VERSION)")
      assert.equal(rockspec .. "\n", capture("ls *.rockspec"))   -- no rockspec of another version
      assert.truthy(text:find('\nversion = "' .. version() .. '-1"\n', 1, true))
      assert(built, "luarocks make failed:\n" .. tail(log))
      assert.is_nil(log:find("Warning", 1, true), "luarocks make warned:\n" .. tail(log))
    end)

    it("every source file carries the MIT SPDX line", function()
      local files = capture("git ls-files 2>/dev/null || find . -type f -not -path './build*'")
      local missing = {}
      for f in files:gmatch("[^\n]+") do
        local skip = f:match("^debian/") or f:match("%.md$") or f == "LICENSE" or
                     f:match("^spec/fuzz/corpus/") or f:match("^spec/fuzz/regress/")
        if not skip then
          local text = read_file(f) or ""
          if not text:sub(1, 400):find("SPDX-License-Identifier: MIT", 1, true) then
            missing[#missing + 1] = f
          end
        end
      end
      assert(#missing == 0, "no SPDX line: " .. table.concat(missing, ", "))
    end)

    it("passes luarocks lint, with the MIT license and lua-cjson declared", function()
      local out, ok = capture(luarocks("lint " .. quote(rockspec)) .. " 2>&1")
      assert(ok, "luarocks lint: " .. out)
      local text = assert(read_file(rockspec))
      assert.truthy(text:find('\n  license = "MIT",\n', 1, true))
      assert.truthy(text:find('"lua%-cjson >= [%d.]+"'))
      local license = assert(read_file("LICENSE"), "no LICENSE file")
      assert.matches("^MIT License\n", license)
    end)

    it("lets a fresh lua5.4 require the module from the tree", function()
      assert(built, "luarocks make failed")
      local out, ok = capture("cd / && env -u LUA_CPATH_5_4 -u LUA_PATH_5_4 LUA_PATH=';;' LUA_CPATH=" ..
                              quote(tree .. "/lib/lua/5.4/?.so") .. " lua5.4 -e " ..
                              quote('local rs = require "rigatoni_store"; ' ..
                                    'print(package.searchpath("rigatoni_store", package.cpath)); ' ..
                                    'print(rs.version); print(type(rs.new))') .. " 2>&1")
      assert(ok, out)
      assert.equal(tree .. "/lib/lua/5.4/rigatoni_store.so\n" .. version() .. "\nfunction\n", out)
      -- the event-loop adapters, pure Lua, in the tree's share/lua/5.4
      for _, m in ipairs { "cqueues", "luv", "adapter", "loop_lease" } do
        local path = tree .. "/share/lua/5.4/rigatoni_store/" .. m .. ".lua"
        assert(read_file(path), "the rock did not install " .. path)
      end
    end)

    it("installs the host under the tree's bin/, and it finds its bundled scripts", function()
      assert(built, "luarocks make failed")
      local host = quote(tree .. "/bin/rigatoni-store")
      local out, ok = capture("cd / && " .. host .. " --version")
      assert(ok, out)
      assert.matches("^rigatoni%-store " .. escape(version()), out)
      for _, s in ipairs(scripts) do
        local help, ran = capture("cd / && env -u RIGATONI_STORE_SCRIPTS " .. host .. " " .. s.name ..
                                  " --help 2>&1")
        assert(ran, s.name .. " --help from the tree: " .. help)
        assert.matches("usage: rigatoni%-store", help)
      end
      local rock = tree .. "/lib/luarocks/rocks-5.4/rigatoni_store/" .. version() .. "-1"
      assert(read_file(rock .. "/share/man/man1/rigatoni-store.1"), "no man page in the rock")
      assert(read_file(rock .. "/share/bash-completion/completions/rigatoni-store"), "no completion in the rock")
    end)

    it("is removed again by luarocks remove", function()
      assert(built, "luarocks make failed")
      local ok, out = run_logged(luarocks("remove --tree " .. quote(tree) .. " rigatoni_store"),
                                 work .. "/remove.log")
      assert(ok, out)
      assert.is_nil(read_file(tree .. "/bin/rigatoni-store"))
      assert.is_nil(read_file(tree .. "/lib/lua/5.4/rigatoni_store.so"))
    end)

    it("names a missing external dependency in LuaRocks' own words", function()
      local src = work .. "/src2"
      assert(sh("mkdir " .. quote(src) .. " && cp " .. quote(rockspec) .. " " .. quote(src)))
      local ok, out = run_logged("cd " .. quote(src) .. " && " ..
                                 luarocks("make --tree " .. quote(work .. "/tree2") .. " " .. rockspec ..
                                          " LIBBSON_DIR=/nonexistent"),
                                 work .. "/missing.log")
      assert.is_false(ok)
      assert.matches("Could not find header file for LIBBSON", out)
    end)
  end)
end)
