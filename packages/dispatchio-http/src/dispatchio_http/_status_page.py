"""The status page at ``{prefix}/``: one self-contained HTML document for people.

Rendered on the server, so it reads without JavaScript; a small inline script (no
framework, nothing fetched from elsewhere) then polls ``v1/status`` every second and
redraws the same tables. Everything shown is escaped: listener IDs come from clients.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["status_page"]

_STYLE = """
:root { color-scheme: light; --ink:#1d2330; --muted:#5b6478; --line:#dde2ea; --accent:#2f6fdb;
  --ok:#1f8a4c; --bad:#b8322a; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
body { margin:0; color:var(--ink); background:#f5f7fa; }
header { background:#1d2330; color:#fff; padding:18px 28px; display:flex; align-items:baseline;
  gap:18px; flex-wrap:wrap; }
header h1 { font-size:20px; margin:0; font-weight:600; }
header .meta { color:#c9d1e0; font-size:14px; }
#live { margin-left:auto; font-size:13px; color:#c9d1e0; }
#live::before { content:"\\25CF "; color:var(--ok); }
#live.stale::before { color:var(--bad); }
main { padding:20px 28px; display:grid; gap:20px;
  grid-template-columns:repeat(auto-fit,minmax(300px,1fr)); }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:14px 18px; }
section.wide { grid-column:1 / -1; }
h2 { font-size:15px; margin:0 0 10px; color:var(--muted); text-transform:uppercase;
  letter-spacing:.04em; }
table { border-collapse:collapse; width:100%; font-size:14px; }
th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line);
  vertical-align:top; }
th { color:var(--muted); font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size:13px; }
.tag { display:inline-block; padding:1px 7px; border-radius:10px; font-size:12px;
  background:#e8eefb; color:var(--accent); margin:1px 2px; }
.tag.local { background:#e3f4ea; color:var(--ok); }
.empty { color:var(--muted); font-style:italic; }
"""

_SCRIPT = """
(function () {
  var token = new URLSearchParams(location.search).get("access_token");
  var url = "v1/status" + (token ? "?access_token=" + encodeURIComponent(token) : "");
  var live = document.getElementById("live");
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function tags(items, cls) {
    var td = el("td");
    if (!items.length) td.appendChild(el("span", "none", "empty"));
    items.forEach(function (t) { td.appendChild(el("span", t, "tag" + (cls ? " " + cls : ""))); });
    return td;
  }
  function counters(id, data) {
    var body = document.getElementById(id);
    body.replaceChildren();
    Object.keys(data).forEach(function (k) {
      var tr = el("tr"); tr.appendChild(el("td", k)); tr.appendChild(el("td", data[k], "num"));
      body.appendChild(tr);
    });
  }
  function draw(s) {
    document.getElementById("process").textContent = String(s.process);
    document.getElementById("uptime").textContent = s.uptime + " s";
    document.getElementById("peers").textContent = String(s.peers.length);
    counters("stats", s.stats);
    counters("gateway", s.gateway);
    var body = document.getElementById("processes");
    body.replaceChildren();
    s.directory.processes.forEach(function (p) {
      var tr = el("tr");
      var name = el("td"); name.appendChild(el("code", p.process));
      if (p.local) name.appendChild(el("span", "this process", "tag local"));
      tr.appendChild(name);
      tr.appendChild(tags(p.urls.map(String)));
      tr.appendChild(tags(p.listeners.map(String)));
      tr.appendChild(tags(p.groups.map(function (g) {
        return g.group + " (" + g.members.length + ")";
      })));
      body.appendChild(tr);
    });
    live.textContent = "live, updated " + new Date().toLocaleTimeString();
    live.className = "";
  }
  function poll() {
    fetch(url, {cache: "no-store"}).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.json();
    }).then(draw).catch(function () {
      live.textContent = "not reachable, retrying";
      live.className = "stale";
    }).finally(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _tags(items: list[Any], cls: str = "") -> str:
    if not items:
        return '<td><span class="empty">none</span></td>'
    klass = f"tag {cls}".strip()
    return "<td>" + "".join(f'<span class="{klass}">{_e(i)}</span>' for i in items) + "</td>"


def _counter_rows(data: dict[str, Any]) -> str:
    return "".join(
        f'<tr><td>{_e(k)}</td><td class="num">{_e(v)}</td></tr>' for k, v in data.items()
    )


def _process_rows(processes: list[dict[str, Any]]) -> str:
    rows = []
    for p in processes:
        local = ' <span class="tag local">this process</span>' if p["local"] else ""
        groups = [f"{g['group']} ({len(g['members'])})" for g in p["groups"]]
        rows.append(
            f"<tr><td><code>{_e(p['process'])}</code>{local}</td>"
            f"{_tags(p['urls'])}{_tags(p['listeners'])}{_tags(groups)}</tr>"
        )
    return "".join(rows)


def status_page(status: dict[str, Any], prefix: str) -> str:
    """The page, showing ``status`` (the ``/v1/status`` document) as of now."""
    process = _e(status["process"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dispatchio: {process}</title>
<base href="{_e(prefix)}/">
<style>{_STYLE}</style></head>
<body>
<header><h1>dispatchio process <code id="process">{process}</code></h1>
<span class="meta">up <span id="uptime">{_e(status["uptime"])} s</span>,
<span id="peers">{len(status["peers"])}</span> peers connected</span>
<span id="live" class="stale">as loaded (live updates need JavaScript)</span></header>
<main>
<section class="wide"><h2>Processes, listeners and groups</h2>
<table><thead><tr><th>process</th><th>listens on</th><th>listeners</th><th>groups (members)</th>
</tr></thead><tbody id="processes">{_process_rows(status["directory"]["processes"])}</tbody>
</table></section>
<section><h2>Dispatcher counters</h2><table><tbody id="stats">{_counter_rows(status["stats"])}
</tbody></table></section>
<section><h2>Gateway</h2><table><tbody id="gateway">{_counter_rows(status["gateway"])}
</tbody></table></section>
</main>
<script>{_SCRIPT}</script>
</body></html>
"""
