-- wrk script of `make bench` (bench/api.py): POST prediction bodies with a token.
--
-- Environment (set by bench/api.py):
--   BENCH_BODIES   Lua file returning a table of JSON bodies (realistic rows, cycled)
--   BENCH_TOKEN    API token secret
--   BENCH_PATH     endpoint path
--   BENCH_ID       request-id prefix of this run; each request gets <prefix>-<thread>-<n>
--   BENCH_IDS_OUT  file that receives the X-Request-ID of every 2xx response, one a line
-- done() prints one line "BENCH_RESULT {json}" for bench/api.py to parse.

local bodies = dofile(os.getenv("BENCH_BODIES"))
local id_prefix = os.getenv("BENCH_ID")

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Token " .. os.getenv("BENCH_TOKEN")

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

sent = 0
non2xx = 0
ok_ids = {}
first_error = ""

function request()
  sent = sent + 1
  -- A unique id per request lets the audit check match each 2xx answer to its row.
  wrk.headers["X-Request-ID"] = string.format("%s-%d-%d", id_prefix, tid, sent)
  return wrk.format(nil, nil, nil, bodies[(sent % #bodies) + 1])
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok_ids[#ok_ids + 1] = headers["X-Request-ID"] or "?"
  else
    non2xx = non2xx + 1
    if first_error == "" then
      first_error = status .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

local function json_string(text)
  return '"' .. string.gsub(text, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

function done(summary, latency, requests)
  local total_non2xx, total_sent, error_text = 0, 0, ""
  local out = assert(io.open(os.getenv("BENCH_IDS_OUT"), "w"))
  for _, thread in ipairs(threads) do
    total_non2xx = total_non2xx + thread:get("non2xx")
    total_sent = total_sent + thread:get("sent")
    if error_text == "" then
      error_text = thread:get("first_error")
    end
    for _, id in ipairs(thread:get("ok_ids")) do
      out:write(id, "\n")
    end
  end
  out:close()
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"duration_us": %d, "requests": %d, "sent": %d, "non2xx": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, '
      .. '"first_error": %s}\n',
    summary.duration, summary.requests, total_sent, total_non2xx,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, json_string(error_text)))
end
