-- wrk script: rotates over the search URLs listed in the file named by WRK_URLS
-- (one path?query per line, e.g. from `engine_latency --snapshot S --urls`).
-- Requests are pre-formatted once per thread, so the script costs wrk little.
local reqs = {}
local i = 0

function init(args)
  local file = os.getenv("WRK_URLS") or "benches/wrk/urls.txt"
  for line in io.lines(file) do
    if #line > 0 then
      reqs[#reqs + 1] = wrk.format("GET", line)
    end
  end
  if #reqs == 0 then
    error("no URLs in " .. file)
  end
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end
