// The dashboard's page: one self-contained HTML document (style and script inline, no external
// file, no CDN), so it works offline and under a strict Content-Security-Policy. The server
// replaces every @NONCE@ with a fresh nonce per response; the CSP admits only those two elements.
//
// The script polls /api/state every second and renders with textContent only (task names and
// failure details are untrusted text). Stable ids for tests: pool-<id>-<counter> holds each
// counter as a plain integer; body[data-updated] counts successful renders.
#pragma once

namespace parx::observe::detail {

inline constexpr const char* kDashboardPage = R"PARXPAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>parx dashboard</title>
<link rel="icon" href="data:,">
<style nonce="@NONCE@">
:root {
  --bg: #f4f5f7; --card: #fff; --line: #e2e5e9; --soft: #f0f2f4; --text: #1d2127;
  --muted: #68707a; --accent: #2563eb; --bad: #c2410c;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { display: flex; align-items: baseline; flex-wrap: wrap; gap: 6px 22px; padding: 12px 24px;
  background: #161b22; color: #f0f3f6; }
header h1 { margin: 0 8px 0 0; font-size: 17px; font-weight: 600; letter-spacing: .01em; }
header .meta { color: #9ea7b3; font-size: 13px; }
header .meta b { color: #e6edf3; font-weight: 500; }
#status { margin-left: auto; color: #9ea7b3; font-size: 13px; }
#status::before { content: ""; display: inline-block; width: 8px; height: 8px; margin-right: 6px;
  border-radius: 50%; background: #6b7280; }
#status.ok::before { background: #22c55e; }
#status.stale::before { background: #f59e0b; }
#status.denied::before { background: #ef4444; }
main { max-width: 1360px; margin: 0 auto; padding: 20px 24px 32px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 16px 18px; margin-bottom: 18px; }
.card h2 { margin: 0 0 12px; font-size: 15px; font-weight: 600; }
.card h2 .sub { margin-left: 10px; color: var(--muted); font-weight: 400; font-size: 13px; }
.counters { display: grid; grid-template-columns: repeat(auto-fill, minmax(118px, 1fr)); gap: 8px;
  margin-bottom: 16px; }
.counter { border: 1px solid var(--line); border-radius: 6px; padding: 7px 10px; }
.label { color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .05em; }
.num { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.counter.alert .num { color: var(--bad); }
.row { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 20px; }
@media (max-width: 900px) { .row { grid-template-columns: minmax(0, 1fr); } }
.chart-head { display: flex; justify-content: space-between; align-items: baseline; }
.chart-head .now { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
canvas { display: block; width: 100%; height: 190px; margin-top: 4px; }
.workers { max-height: 214px; overflow: auto; margin-top: 4px; }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th { position: sticky; top: 0; background: var(--card); text-align: left; color: var(--muted);
  font-size: 11px; font-weight: 600; text-transform: uppercase; letter-spacing: .05em;
  padding: 4px 8px; border-bottom: 1px solid var(--line); }
td { padding: 3px 8px; border-bottom: 1px solid var(--soft); font-variant-numeric: tabular-nums; }
td.r, th.r { text-align: right; }
.state { display: inline-block; min-width: 58px; padding: 0 8px; border-radius: 10px; font-size: 12px;
  font-weight: 500; text-align: center; background: #eef1f4; color: #4b5563; }
.state.busy { background: #dcfce7; color: #166534; }
.state.idle { background: #eef1f4; color: #4b5563; }
.state.starting { background: #fef3c7; color: #92400e; }
.state.stopped { background: #fee2e2; color: #991b1b; }
.empty { color: var(--muted); margin: 4px 0; }
.failure { border-top: 1px solid var(--soft); padding: 5px 0; }
.failure:first-child { border-top: 0; }
.failure summary { cursor: pointer; display: flex; gap: 14px; align-items: baseline; list-style: none; }
.failure summary::-webkit-details-marker { display: none; }
.failure summary::before { content: "\25B8"; flex: none; width: 8px; color: var(--muted); }
.failure[open] summary::before { content: "\25BE"; }
.failure summary .m.none { color: var(--muted); font-style: italic; }
.failure summary .t { color: var(--muted); font-variant-numeric: tabular-nums; flex: none; }
.failure summary .p { color: var(--muted); flex: none; }
.failure summary .f { font-weight: 600; flex: none; }
.failure summary .m { color: var(--bad); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.failure .where { color: var(--muted); font-size: 12px; margin: 6px 0 0 18px; }
.failure pre { margin: 6px 0 4px 18px; padding: 10px 12px; background: #f6f8fa; border-radius: 6px;
  font: 12px/1.5 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; white-space: pre-wrap;
  overflow: auto; max-height: 360px; }
</style>
</head>
<body data-updated="0">
<header>
  <h1>parx dashboard</h1>
  <span class="meta">program <b id="program">…</b></span>
  <span class="meta">host <b id="host">…</b></span>
  <span class="meta">pid <b id="pid">…</b></span>
  <span class="meta">up <b id="uptime">…</b></span>
  <span id="status">connecting…</span>
</header>
<main>
  <div id="pools"><p class="empty card" id="no-pools">No live pools in this process.</p></div>
  <section class="card" id="failures-card">
    <h2>Recent failures<span class="sub" id="failures-total"></span></h2>
    <div id="failures"><p class="empty">None.</p></div>
  </section>
</main>
<script nonce="@NONCE@">
'use strict';
(function () {
  const token = new URLSearchParams(location.search).get('token');
  const COUNTERS = [
    ['submitted', 'submitted'], ['queue_depth', 'queued'], ['running', 'running'],
    ['done', 'done'], ['failed', 'failed'], ['cancelled', 'cancelled'], ['retried', 'retried'],
    ['worker_restarts', 'restarts'], ['bytes_moved', 'bytes moved']];
  const ALERT = new Set(['failed', 'worker_restarts']);
  const KIND = {thread: 'ThreadPool', process: 'ProcessPool', cluster: 'ClusterPool'};
  const cards = new Map();     // pool id -> {root, nums, chart, now, tbody, sub}
  const failureEls = new Map();  // failure seq -> element
  let updates = 0;

  const $ = (id) => document.getElementById(id);
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  const fmtInt = (n) => Number(n).toLocaleString('en-US', {maximumFractionDigits: 0});
  function fmtRate(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e7 ? 0 : 1) + 'M';
    if (v >= 1e4) return (v / 1e3).toFixed(0) + 'k';
    if (v >= 100 || v === 0) return v.toFixed(0);
    return v.toFixed(v >= 10 ? 1 : 2);
  }
  // Tick labels share one format: as many decimals as the step has, "k" from 10 000 up.
  function fmtTick(v, step, top) {
    const k = top >= 1e4;
    const s = k ? step / 1e3 : step;
    const dec = Number.isInteger(s) ? 0 : Math.min(3, (String(s).split('.')[1] || '').length);
    return (k ? v / 1e3 : v).toFixed(dec) + (k && v ? 'k' : '');
  }
  function fmtBytes(n) {
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; ++i; }
    return (i ? n.toFixed(1) : String(n)) + ' ' + u[i];
  }
  function fmtSpan(s) {
    s = Math.round(s);
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + (s % 60 ? String(s % 60).padStart(2, '0') + 's' : '');
    return Math.floor(s / 3600) + 'h' + String(Math.floor(s % 3600 / 60)).padStart(2, '0') + 'm';
  }
  const pad2 = (n) => String(n).padStart(2, '0');
  function clock(ms) {
    const d = new Date(ms);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }

  function makeCard(p) {
    const root = el('section', 'card pool');
    root.id = 'pool-' + p.id;
    const h = el('h2', null, (KIND[p.kind] || p.kind) + ' #' + p.id);
    const sub = el('span', 'sub');
    h.append(sub);
    const grid = el('div', 'counters');
    const nums = {};
    for (const [key, label] of COUNTERS) {
      const c = el('div', 'counter');
      c.dataset.counter = key;
      const n = el('div', 'num', '0');
      n.id = 'pool-' + p.id + '-' + key;
      c.append(el('div', 'label', label), n);
      grid.append(c);
      nums[key] = n;
    }
    const row = el('div', 'row');
    const left = el('div');
    const head = el('div', 'chart-head');
    const now = el('span', 'now');
    head.append(el('span', 'label', 'throughput · tasks/s (done + failed)'), now);
    const chart = el('canvas');
    chart.id = 'pool-' + p.id + '-chart';
    left.append(head, chart);
    const right = el('div');
    const wrap = el('div', 'workers');
    const table = el('table');
    const thead = el('thead');
    const tr = el('tr');
    for (const [t, cls] of [['worker'], ['state'], ['tasks', 'r'], ['pid', 'r'], ['host'], ['rank', 'r']])
      tr.append(el('th', cls, t));
    thead.append(tr);
    const tbody = el('tbody');
    tbody.id = 'pool-' + p.id + '-workers';
    table.append(thead, tbody);
    wrap.append(table);
    right.append(el('div', 'label', 'workers'), wrap);
    row.append(left, right);
    root.append(h, grid, row);
    return {root, nums, chart, now, tbody, sub};
  }

  // A y axis with round steps: at most four gridlines above zero.
  function yAxis(max) {
    if (!(max > 0)) return {top: 1, step: 0.25};
    const raw = max / 4;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    let step = 10 * p;
    for (const m of [1, 2, 2.5, 5]) if (raw <= m * p) { step = m * p; break; }
    return {top: Math.ceil(max / step) * step, step};
  }

  function drawChart(cv, samples, everyMs, capacity) {
    const dpr = window.devicePixelRatio || 1;
    const w = cv.clientWidth, h = cv.clientHeight;
    if (!w || !h) return;
    if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
      cv.width = Math.round(w * dpr);
      cv.height = Math.round(h * dpr);
    }
    const g = cv.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const L = 46, R = 8, T = 8, B = 22;
    const pw = w - L - R, ph = h - T - B;
    // Show at least a minute, at most what the server keeps.
    const n = Math.max(2, Math.min(capacity, Math.max(samples.length, Math.round(60000 / everyMs))));
    const shown = samples.slice(-n);
    const {top, step} = yAxis(Math.max(0, ...shown) * 1.02);
    g.font = '11px system-ui, sans-serif';
    g.lineWidth = 1;
    for (let v = 0; v <= top + step / 2; v += step) {
      const y = Math.round(T + ph - ph * v / top) + 0.5;
      g.strokeStyle = v ? '#eceef1' : '#9aa1a9';
      g.beginPath(); g.moveTo(L, y); g.lineTo(L + pw, y); g.stroke();
      g.fillStyle = '#68707a'; g.textAlign = 'right'; g.textBaseline = 'middle';
      g.fillText(fmtTick(v, step, top), L - 6, y);
    }
    g.strokeStyle = '#9aa1a9';
    g.beginPath(); g.moveTo(L + 0.5, T); g.lineTo(L + 0.5, T + ph); g.stroke();
    const span = (n - 1) * everyMs / 1000;
    g.textBaseline = 'top';
    for (let i = 0; i <= 4; ++i) {
      const x = L + pw * i / 4;
      g.textAlign = i === 0 ? 'left' : i === 4 ? 'right' : 'center';
      g.fillText(i === 4 ? 'now' : '−' + fmtSpan(span * (4 - i) / 4), x, T + ph + 6);
      g.strokeStyle = '#9aa1a9';
      g.beginPath(); g.moveTo(Math.round(x) + 0.5, T + ph); g.lineTo(Math.round(x) + 0.5, T + ph + 4); g.stroke();
    }
    if (!shown.length) {
      g.fillStyle = '#9aa1a9'; g.textAlign = 'center'; g.textBaseline = 'middle';
      g.fillText('waiting for the first sample…', L + pw / 2, T + ph / 2);
      return;
    }
    const X = (i) => L + pw * (n - shown.length + i) / (n - 1);
    const Y = (v) => T + ph - ph * Math.min(v, top) / top;
    g.beginPath();
    g.moveTo(X(0), Y(shown[0]));
    for (let i = 1; i < shown.length; ++i) g.lineTo(X(i), Y(shown[i]));
    g.strokeStyle = '#2563eb'; g.lineWidth = 1.6; g.lineJoin = 'round'; g.stroke();
    g.lineTo(X(shown.length - 1), T + ph); g.lineTo(X(0), T + ph); g.closePath();
    g.fillStyle = 'rgba(37, 99, 235, 0.10)'; g.fill();
  }

  function renderPool(p, s) {
    let c = cards.get(p.id);
    if (!c) {
      c = makeCard(p);
      cards.set(p.id, c);
    }
    $('pools').append(c.root);  // keeps the server's order (creation order)
    for (const [key] of COUNTERS) {
      const v = p.counters[key];
      c.nums[key].textContent = fmtInt(v);
      c.nums[key].parentNode.classList.toggle('alert', ALERT.has(key) && v > 0);
    }
    c.nums.bytes_moved.title = fmtBytes(p.counters.bytes_moved);
    const busy = p.workers.filter((w) => w.state === 'busy').length;
    c.sub.textContent = p.workers.length + (p.workers.length === 1 ? ' worker' : ' workers') +
        ' · ' + busy + ' busy';
    const rows = [];
    for (const w of p.workers) {
      const tr = el('tr');
      const st = el('td');
      st.append(el('span', 'state ' + w.state, w.state));
      tr.append(el('td', null, w.index), st, el('td', 'r', fmtInt(w.tasks)), el('td', 'r', w.pid),
                el('td', null, w.host), el('td', 'r', w.rank < 0 ? '–' : w.rank));
      rows.push(tr);
    }
    c.tbody.replaceChildren(...rows);
    const t = p.throughput || [];
    c.now.textContent = t.length ? 'now ' + fmtRate(t[t.length - 1]) + '/s · peak ' +
        fmtRate(Math.max(...t)) + '/s' : '';
    drawChart(c.chart, t, s.process.sample_every_ms, s.process.history);
  }

  function renderFailures(s) {
    const box = $('failures');
    const seen = new Set();
    const list = s.failures.slice().reverse();  // newest first
    for (const f of list) {
      seen.add(f.seq);
      if (failureEls.has(f.seq)) continue;
      const d = el('details', 'failure');
      d.id = 'failure-' + f.seq;
      const sm = el('summary');
      const crashed = f.event === 'worker_crashed';
      const first = (f.detail || '').split('\n')[0];
      const who = f.function || (crashed ? 'worker ' + f.worker : f.task_id ? 'task ' + f.task_id : 'a task');
      sm.append(el('span', 't', clock(f.time_unix_ms)),
                el('span', 'p', (KIND[f.pool_kind] || f.pool_kind) + ' #' + f.pool),
                el('span', 'f', who),
                el('span', first ? 'm' : 'm none',
                   first || (crashed ? 'worker crashed' : 'failed (no message reported)')));
      const where = [];
      if (f.task_id) where.push('task ' + f.task_id);
      if (f.worker >= 0) where.push('worker ' + f.worker);
      if (f.pid) where.push('pid ' + f.pid);
      if (f.rank >= 0) where.push('rank ' + f.rank);
      if (f.host) where.push('host ' + f.host);
      where.push(f.event.replace('_', ' '));
      d.append(sm, el('div', 'where', where.join(' · ')), el('pre', null, f.detail || '(no detail)'));
      if (location.hash === '#' + d.id) d.open = true;  // a link to one failure opens it
      failureEls.set(f.seq, d);
    }
    for (const [seq, e] of failureEls)
      if (!seen.has(seq)) { e.remove(); failureEls.delete(seq); }
    const ordered = list.map((f) => failureEls.get(f.seq));
    if (ordered.length) box.replaceChildren(...ordered);
    else box.replaceChildren(el('p', 'empty', 'None.'));
    $('failures-total').textContent = s.failures_total ?
        (s.failures_total + ' in total' + (s.failures_total > list.length ? ', last ' + list.length + ' shown' : '')) : '';
  }

  function render(s) {
    $('program').textContent = s.process.program;
    $('host').textContent = s.process.host;
    $('pid').textContent = s.process.pid;
    $('uptime').textContent = fmtSpan(s.process.uptime_s);
    const live = new Set(s.pools.map((p) => p.id));
    for (const [id, c] of cards)
      if (!live.has(id)) { c.root.remove(); cards.delete(id); }
    $('no-pools').hidden = s.pools.length > 0;
    for (const p of s.pools) renderPool(p, s);
    renderFailures(s);
    const st = $('status');
    st.className = 'ok';
    st.textContent = 'live · ' + clock(s.process.now_unix_ms);
    document.body.dataset.updated = String(++updates);
  }

  async function poll() {
    try {
      const r = await fetch('api/state', {
        headers: token ? {Authorization: 'Bearer ' + token} : {},
        cache: 'no-store', credentials: 'same-origin'});
      if (r.status === 403) {
        const st = $('status');
        st.className = 'denied';
        st.textContent = 'token rejected: open the URL the program printed';
      } else if (!r.ok) {
        throw new Error('HTTP ' + r.status);
      } else {
        render(await r.json());
      }
    } catch (e) {
      const st = $('status');
      st.className = 'stale';
      st.textContent = 'disconnected (' + e.message + ')';
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
</script>
</body>
</html>
)PARXPAGE";

}  // namespace parx::observe::detail
