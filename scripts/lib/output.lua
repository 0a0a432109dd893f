-- SPDX-License-Identifier: MIT
-- scripts/lib/output.lua -- how the bundled scripts put data where it
-- belongs: output files, temporary files, names rendered safely for each
-- format, and the progress line. Needs only the `host` global of
-- rigatoni-store (host_files.c, host_signal.c); loads without it (a spec
-- may require it for its renderers).
--
-- Output files: only a regular file (or a path that does not exist yet)
-- is written through a temporary file in its own folder and renamed into
-- place, so readers never see half a file; a symlink is followed and its
-- target replaced (the link stays); a FIFO, a character device, a socket
-- or the host's own stdout/stderr (/dev/stdout, /dev/fd/1) is written
-- through -- renaming over those would replace the node itself. A file
-- replaced keeps its mode, and its owner and group where the host may set
-- them (run as root), as sed -i does; hard links to it and ACLs are not
-- carried over. Temporary
-- files are host.temp_file's: the host removes them whatever ends the run
-- (an error, SIGINT, SIGTERM).
--
-- Rendering: names come from the keyspace and anyone who may write a key
-- chooses them. Each format escapes what would let a name forge structure
-- or act on the reader: CSV cells that a spreadsheet would run as a
-- formula, control characters in the table format, bytes that are not
-- UTF-8 in Prometheus label values.

local M = {}

local host = rawget(_G, "host") or {}

local function usage_error(message)
  error(setmetatable({ kind = "usage", message = message, retryable = false, attempts = 0 },
                     { __tostring = function(e) return e.kind .. ": " .. e.message end }), 0)
end

local function failed(message)
  error(setmetatable({ kind = "failed", message = message, retryable = false, attempts = 0 },
                     { __tostring = function(e) return e.kind .. ": " .. e.message end }), 0)
end

-- ---------------------------------------------------------------------
-- Temporary files
-- ---------------------------------------------------------------------

-- $TMPDIR when set, else /tmp.
function M.temp_dir()
  local dir = os.getenv("TMPDIR")
  if not dir or dir == "" then dir = "/tmp" end
  return (dir:gsub("(.)/+$", "%1"))
end

-- A new temporary file in $TMPDIR: file, path. The host removes it when
-- the run ends, unless M.remove_temp removed it first.
function M.temp_file(what)
  local dir = M.temp_dir()
  local file, path = host.temp_file(dir, 384)   -- 0600: a copy of tokens is private
  if not file then failed(what .. ": " .. path .. " (set TMPDIR to a writable folder)") end
  return file, path
end

function M.remove_temp(path) host.remove_temp(path) end

-- A temporary file with no name (removed at once): scratch space in $TMPDIR.
function M.scratch_file(what)
  local file, path = M.temp_file(what)
  host.remove_temp(path)
  return file
end

-- ---------------------------------------------------------------------
-- Output files
-- ---------------------------------------------------------------------

local write_through = { fifo = true, char = true, socket = true }

local function dirname(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  return d == "" and "/" or d
end

-- Opens where `option` (e.g. "--output") says the data goes: "-" is
-- stdout. Checked before anything else is done (a usage error names the
-- option): a folder, a block device or a path in a missing folder is
-- refused. Returns a sink:
--   sink.file            the file to write to
--   sink.path            the path as given ("-" for stdout)
--   sink:commit()        close (and rename into place); true, or nil and why
--   sink:abort()         close and remove the temporary file, if any
-- and the sink is a to-be-closed value that aborts unless committed.
-- io.open's reason without the path it starts with ("F: No such file" ->
-- "No such file"), for a message that names the path once itself.
function M.io_reason(err, path)
  err = tostring(err)
  if path and err:sub(1, #path + 2) == path .. ": " then return err:sub(#path + 3) end
  return err
end

-- How PATH will be written, decided from what it is now, without creating
-- anything (so a tool checks it before it connects or changes anything):
-- "stdout"/"stderr", "through" (a FIFO, a device, a socket, an open file's
-- name: appended to, never truncated or renamed over) or "replace" (a
-- regular file or a new name: a temp file in its folder, then a rename).
-- Raises a usage error naming option and PATH when it cannot be written.
function M.check(path, option)
  local function bad(why) usage_error(option .. " " .. path .. ": " .. why) end
  if path == "" then usage_error(option .. ": an empty path") end
  if path == "-" then return { how = "stdout" } end
  if path:sub(-1) == "/" then bad("names a folder") end
  local info, err = host.file_info(path)
  if not info then bad(err) end
  local kind = info.type
  if info.stdio then return { how = info.stdio } end
  if write_through[kind] or ((kind == "regular" or kind == "missing") and not info.target) then
    return { how = "through", bad = bad }
  elseif kind == "regular" or kind == "missing" then
    local folder = dirname(info.target)
    local dinfo = host.file_info(folder)
    if not dinfo or dinfo.type ~= "directory" then bad("no such folder " .. folder) end
    return { how = "replace", info = info, folder = folder, bad = bad }
  elseif kind == "directory" then
    bad("is a directory")
  end
  bad("is a " .. kind .. " device or special file; only a regular file, a FIFO or a character device is written")
end

function M.open(path, option)
  local sink = { path = path, file = io.stdout }
  local plan = M.check(path, option)
  if plan.how == "stderr" then
    sink.file = io.stderr
  elseif plan.how == "through" then
    local f, oerr = io.open(path, "ab")
    if not f then plan.bad(M.io_reason(oerr, path)) end
    sink.file, sink.through = f, true
  elseif plan.how == "replace" then
    local info = plan.info
    local name = "." .. info.target:match("[^/]*$") .. ".tmp"
    local f, tmp = host.temp_file(plan.folder, info.mode, name, info.uid, info.gid)
    if not f then plan.bad(tmp) end
    sink.file, sink.tmp, sink.target = f, tmp, info.target
  end

  function sink.commit()
    if sink.done then return true end
    sink.done = true
    if sink.file == io.stdout or sink.file == io.stderr then
      local ok, err = sink.file:flush()
      return ok, err
    end
    local ok, err = sink.file:close()
    if not ok then
      if sink.tmp then host.remove_temp(sink.tmp) end
      return nil, "writing " .. (sink.tmp or path) .. ": " .. tostring(err)
    end
    if sink.tmp then return host.commit_temp(sink.tmp, sink.target) end
    return true
  end

  function sink.abort()
    if sink.done then return end
    sink.done = true
    if sink.file ~= io.stdout and sink.file ~= io.stderr then sink.file:close() end
    if sink.tmp then host.remove_temp(sink.tmp) end
  end

  return setmetatable(sink, { __close = function(s) s.abort() end })
end

-- ---------------------------------------------------------------------
-- Rendering names
-- ---------------------------------------------------------------------

-- CSV (RFC 4180) with the OWASP advice against formula injection: a cell
-- that starts with = + - @, a tab or a carriage return -- after any
-- blanks, which an import may trim -- gets a leading single quote, and
-- every such cell is quoted, so a spreadsheet shows it as text instead of
-- running it. A cell holding ; is quoted too: where ; is the separator
-- (many locales) "a;=cmd" would otherwise be two cells, the second a
-- formula. Numbers the scripts compute are written as they are; this is
-- for text.
function M.csv_field(s)
  s = tostring(s)
  local formula = s:find("^[ \t\r\n]*[=+%-@\t\r]") ~= nil
  if formula then s = "'" .. s end
  if formula or s:find('[,;"\r\n]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

-- Text for a terminal or a column of the table format: every byte below
-- 0x20, DEL, a backslash and bytes that are not UTF-8 are escaped (\n \r
-- \t \\ \xNN), as are the C1 controls U+0080 to U+009F (\xC2\xNN), so a
-- name can neither break a row nor send the terminal a control sequence.
local named = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\\"] = "\\\\" }

local function hex_bytes(s)
  return (s:gsub(".", function(c) return string.format("\\x%02x", c:byte()) end))
end

-- Calls emit(valid_utf8_run) and bad(byte_string) over s in order.
local function split_utf8(s, emit, bad)
  local i, n = 1, #s
  while i <= n do
    local len, pos = utf8.len(s, i)
    if len then
      emit(s:sub(i))
      return
    end
    if pos > i then emit(s:sub(i, pos - 1)) end
    bad(s:sub(pos, pos))
    i = pos + 1
  end
end

M.split_utf8 = split_utf8

function M.text(s)
  s = tostring(s)
  if not s:find("[%c\\\128-\255]") then return s end
  local out = {}
  split_utf8(s, function(run)
    run = run:gsub("[%c\\]", function(c) return named[c] or string.format("\\x%02x", c:byte()) end)
    run = run:gsub("\194[\128-\159]", hex_bytes)
    out[#out + 1] = run
  end, function(b) out[#out + 1] = hex_bytes(b) end)
  return table.concat(out)
end

-- A Prometheus label value, without the quotes: the one escaper of every
-- exposition (list --format prometheus, serve). The text format takes any
-- UTF-8 with a backslash, a double quote and a line feed escaped (\\ \"
-- \n), so a name that is UTF-8 text reaches Prometheus as it is. What the
-- format cannot carry -- a byte that is not UTF-8 -- and the other control
-- characters (NUL, CR, tab ...: they would hide in a dashboard) read as
-- the four characters \xNN in the value. So that no name can pass for
-- another, a backslash of the name that is followed by "x" reads \x5c:
-- the value "a\xff" is the name a<0xff>, "a\x5cxff" the name a\xff.
local function prom_byte(c) return string.format("\\\\x%02x", c:byte()) end
local prom_escape = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }

local function prom_run(run)
  run = run:gsub("\\x", "\\x5cx")   -- a name's "\x": its backslash spelt \x5c (escaped below)
  return (run:gsub('[%c\\"]', function(c) return prom_escape[c] or prom_byte(c) end))
end

function M.prom_label(s)
  s = tostring(s)
  if not s:find('[%c\\"\128-\255]') then return s end
  local out = {}
  split_utf8(s, function(run) out[#out + 1] = prom_run(run) end,
             function(b) out[#out + 1] = prom_byte(b) end)
  return table.concat(out)
end

-- ---------------------------------------------------------------------
-- Progress
-- ---------------------------------------------------------------------

local function clock()
  return host.now and host.now() or os.clock()
end

-- The number of keys of a whole-keyspace walk: DBSIZE (every key of the
-- database, so an upper bound for the tokens under the prefix). nil in
-- cluster mode (DBSIZE counts one node) or when the server refuses it.
function M.keyspace_total(store)
  local cfg = rawget(_G, "config") or {}
  if cfg.cluster_mode == true or cfg.cluster_mode == "true" then return nil end
  local ok, n = pcall(store.command, store, { idempotent = true }, "DBSIZE")
  return ok and math.tointeger(n) or nil
end

local function format_eta(s)
  if s < 60 then return string.format("%ds", math.ceil(s)) end
  if s < 3600 then return string.format("%dm%02ds", s // 60, math.floor(s % 60)) end
  return string.format("%dh%02dm", s // 3600, math.floor(s % 3600) // 60)
end

-- A progress line on stderr: only when stderr is a terminal and -q was
-- not given, from about a second into the run, at most 5 times a second.
-- opts.data_on_stdout: the script writes data rows to stdout while it
--   runs; then no line at all when stdout is the same terminal (it would
--   land among the rows).
-- opts.total: a function giving the expected count (called once, only
--   when the line is shown); with it the line shows "N of TOTAL" and an
--   ETA.
-- While the line is shown, io.write and host.log clear it first, so that
-- a data row or a warning never follows it on the same terminal line.
function M.progress(label, opts)
  opts = opts or {}
  local self = { started = clock(), last = 0, shown = false }
  local enabled = host.stderr_is_tty and not host.quiet
  if enabled and host.same_terminal and host.same_terminal() and opts.data_on_stdout then enabled = false end
  local total, asked = nil, false
  local real_write, real_log = io.write, host.log

  local function clear()
    if self.shown then
      io.stderr:write("\r\27[K")
      self.shown = false
    end
  end

  function self.update(count, detail)
    if not enabled then return end
    local t = clock()
    if t - self.started < 1 or t - self.last < 0.2 then return end
    self.last = t
    if not asked then
      asked = true
      if opts.total then total = opts.total() end
    end
    local elapsed = t - self.started
    local rate = count / elapsed
    local text
    if total and count <= total then
      local eta = rate > 0 and format_eta((total - count) / rate) or "?"
      text = string.format("%s: %d of %d (%.0f/s, ETA %s)", label, count, total, rate, eta)
    else
      text = string.format("%s: %d (%.0f/s)", label, count, rate)
    end
    if not self.shown then
      io.write = function(...)
        clear()
        return real_write(...)
      end
      if real_log then
        host.log = function(...)
          clear()
          return real_log(...)
        end
      end
    end
    io.stdout:flush()
    io.stderr:write("\r\27[K", text, detail and ("  " .. detail) or "")
    self.shown = true
  end

  function self.done()
    clear()
    io.write, host.log = real_write, real_log
  end

  function self.elapsed()
    return clock() - self.started
  end

  return self
end

return M
