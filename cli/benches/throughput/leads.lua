-- wrk script for the throughput bench: every request a distinct lead (email per thread and counter),
-- bearer-authenticated; prints one JSON line of figures when done.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  nonce = args[1] or "run"
  token = args[2] or "bench-token"
  counter = 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"email":"tp-%s-%d-%d@example.com","first_name":"Load","last_name":"L%d","phone":"+1 555 010 %04d",'
      .. '"vehicle_of_interest":"Model %d","priority":"high","origin_channel":"chat_widget"}',
    nonce, id, counter, counter, counter % 10000, counter % 7)
  return wrk.format("POST", "/v1/leads",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non_2xx":%d,"connect_errors":%d,"read_errors":%d,'
      .. '"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
