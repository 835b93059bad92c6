/* offload dashboard: plain JavaScript, no framework, no build step, and no
 * URL of any other host. Everything it shows comes from the server that
 * served it:
 *
 *   GET /events          the live stream (job and stats events), read with
 *                        fetch() and a small parser of its own, so a token
 *                        travels as a header and never in a URL; reconnects
 *                        with Last-Event-ID after a drop
 *   GET /health, /jobs, /metrics   the fallback when the server has no
 *                        /events (404): polled once a second
 *   GET /tasks           the submit form, generated from each task's params
 *   GET /workers         polled every 2 s while the page is visible
 *   POST /jobs, POST /jobs/<task>, DELETE /jobs/<id>, GET /jobs/<id>,
 *   GET /jobs/<id>/log, GET /jobs/<id>/files/<name>
 *
 * A 401 from any of them shows a token prompt; the token is kept in
 * sessionStorage (this tab only) and sent as "Authorization: Bearer". A
 * server without auth never answers 401, so it never asks. */
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const FINAL = new Set(['complete', 'failed', 'canceled']);
  const TOKEN_KEY = 'offload.token';
  const WINDOW_MS = 5 * 60 * 1000;
  const SHOWN_JOBS = 50;   // rows in the table
  const KEPT_JOBS = 400;   // jobs remembered (the oldest final ones go first)

  const state = {
    tasks: [],
    taskByName: new Map(),
    jobs: new Map(),      // id -> job object, as GET /jobs/<id> shows it
    rows: new Map(),      // id -> <tr>
    filter: '',
    selected: null,       // the id shown in the detail panel
    samples: [],          // {t, depth, capacity, total, busy, done, failed}
    mode: 'connecting',   // 'events' | 'polling'
    lastEventId: null,
  };

  const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function setConn(text, bad) {
    const c = $('conn');
    if (c.textContent !== text) c.textContent = text;
    c.classList.toggle('bad', !!bad);
  }

  function announce(text) {
    $('announce').textContent = text;
  }

  // ---- the token and every request --------------------------------------

  let token = '';
  try { token = sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { token = ''; }
  let tokenWait = null;

  function askToken(refused) {
    if (tokenWait) return tokenWait;
    tokenWait = new Promise((resolve) => {
      const dlg = $('token-dlg');
      const form = $('token-form');
      const input = $('token-in');
      $('token-msg').textContent = refused
        ? 'The server refused that token. Enter it again; it is kept in this tab only and sent as a header.'
        : 'This server asks for a token. It is kept in this tab only (sessionStorage) and sent as a header.';
      input.value = '';
      const onSubmit = (ev) => {
        ev.preventDefault();
        const v = input.value.trim();
        if (!v) { input.focus(); return; }
        token = v;
        try { sessionStorage.setItem(TOKEN_KEY, v); } catch (e) { /* private mode: this page only */ }
        form.removeEventListener('submit', onSubmit);
        dlg.close();
        tokenWait = null;
        resolve();
      };
      form.addEventListener('submit', onSubmit);
      if (!dlg.open) dlg.showModal();
      input.focus();
    });
    return tokenWait;
  }
  // Nothing works without the token: Escape does not dismiss the prompt.
  $('token-dlg').addEventListener('cancel', (ev) => ev.preventDefault());

  // fetch() with the token as a header; a 401 asks for a token and tries again.
  async function api(path, opts) {
    opts = opts || {};
    for (;;) {
      const used = token;
      const headers = Object.assign({}, opts.headers || {});
      if (used) headers.Authorization = 'Bearer ' + used;
      const r = await fetch(path, Object.assign({}, opts, { headers, cache: 'no-store', credentials: 'omit' }));
      if (r.status !== 401) return r;
      if (token && token !== used) continue; // a new token came meanwhile: try it
      if (token) {
        token = '';
        try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
      }
      setConn('Waiting for a token…', true);
      await askToken(!!used);
    }
  }

  async function apiJson(path, opts) {
    const r = await api(path, opts);
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    return { status: r.status, ok: r.ok, body };
  }

  function errorText(res) {
    const e = res.body && res.body.error;
    return e ? res.status + ' ' + e.code + ': ' + e.message : 'HTTP ' + res.status;
  }

  // ---- jobs ---------------------------------------------------------------

  function upsertJob(j) {
    if (!j || typeof j.id !== 'string') return;
    const old = state.jobs.get(j.id);
    // A final job never changes; an older snapshot (a poll that crossed an
    // event) must not take it back.
    if (old && FINAL.has(old.status) && !FINAL.has(j.status)) return;
    state.jobs.set(j.id, j);
    scheduleRender();
    if (state.selected === j.id) scheduleDetail();
  }

  function pruneJobs() {
    if (state.jobs.size <= KEPT_JOBS) return;
    const old = [...state.jobs.values()]
      .filter((j) => FINAL.has(j.status) && j.id !== state.selected)
      .sort((a, b) => a.createdAt - b.createdAt);
    for (const j of old.slice(0, state.jobs.size - KEPT_JOBS)) {
      state.jobs.delete(j.id);
      const tr = state.rows.get(j.id);
      if (tr) { tr.remove(); state.rows.delete(j.id); }
    }
  }

  // The newest jobs, the running ones (older running jobs still move) and
  // those of the filter; then any job still shown as not final that none
  // of the lists held (it finished meanwhile), one by one.
  async function refreshJobs() {
    const lists = ['/jobs?limit=' + SHOWN_JOBS, '/jobs?status=processing&limit=' + SHOWN_JOBS];
    if (state.filter) lists.push('/jobs?status=' + state.filter + '&limit=' + SHOWN_JOBS);
    const res = await Promise.all(lists.map((p) => apiJson(p)));
    const seen = new Set();
    for (const r of res) {
      if (!r.ok || !r.body || !Array.isArray(r.body.jobs)) throw new Error(errorText(r));
      for (const j of r.body.jobs) { seen.add(j.id); upsertJob(j); }
    }
    const stale = [...state.jobs.values()].filter((j) => !FINAL.has(j.status) && !seen.has(j.id)).slice(0, 10);
    await Promise.all(stale.map(async (j) => {
      const r = await apiJson('/jobs/' + encodeURIComponent(j.id));
      if (r.ok) upsertJob(r.body);
      else if (r.status === 404) { state.jobs.delete(j.id); scheduleRender(); }
    }));
    pruneJobs();
  }

  function fmtTime(ms) {
    if (typeof ms !== 'number') return '–';
    return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function pct(p) {
    return (Math.floor((p || 0) * 1000) / 10).toFixed(1) + ' %';
  }

  function jobLabel(j) {
    return j.task + ' job ' + j.id;
  }

  function newRow(j) {
    const tr = el('tr');
    tr.dataset.id = j.id;
    const name = el('td');
    const open = el('button', { type: 'button', class: 'link', 'data-act': 'open' });
    name.append(open, el('span', { class: 'id' }, j.id));
    const status = el('td');
    status.append(el('span', { class: 'st' }));
    const prog = el('td', { class: 'prog' });
    const created = el('td', { class: 'opt' });
    const act = el('td');
    act.append(el('div', { class: 'btns' }));
    tr.append(name, status, prog, created, act);
    return tr;
  }

  function updateRow(tr, j) {
    const [name, status, prog, created, act] = tr.children;
    const open = name.firstChild;
    if (open.textContent !== j.task) open.textContent = j.task;
    open.setAttribute('aria-label', j.task + ' job ' + j.id.slice(0, 8) + '…: details');
    const st = status.firstChild;
    let text = j.status;
    if (j.status === 'queued' && j.queuePosition) text += ' #' + j.queuePosition;
    if (j.status === 'queued' && j.retryAt) text += ' (retry)';
    if (st.textContent !== text) st.textContent = text;
    st.className = 'st st-' + j.status;
    st.title = j.error ? j.error.code + ': ' + j.error.message : '';
    tr.dataset.status = j.status;
    // A progress bar while the job runs; the last figure once it is final.
    let bar = prog.querySelector('progress');
    if (j.status === 'processing') {
      if (!bar) {
        prog.textContent = '';
        bar = el('progress', { max: '1' });
        prog.append(bar, el('span', { class: 'pct' }));
      }
      bar.value = j.progress || 0;
      bar.setAttribute('aria-label', 'Progress of ' + j.task + ' job ' + j.id.slice(0, 8));
      prog.lastChild.textContent = pct(j.progress);
    } else {
      const t = j.status === 'queued' ? '' : pct(j.progress);
      if (bar || prog.textContent !== t) prog.textContent = t;
    }
    const c = fmtTime(j.createdAt);
    if (created.textContent !== c) created.textContent = c;
    const btns = act.firstChild;
    let cancel = btns.querySelector('[data-act=cancel]');
    if (!FINAL.has(j.status) && !cancel) {
      cancel = el('button', { type: 'button', class: 'danger', 'data-act': 'cancel' }, 'Cancel');
      cancel.setAttribute('aria-label', 'Cancel ' + j.task + ' job ' + j.id.slice(0, 8));
      btns.append(cancel);
    } else if (FINAL.has(j.status) && cancel) {
      const hadFocus = document.activeElement === cancel;
      cancel.remove();
      if (hadFocus) open.focus();
    }
    tr.classList.toggle('sel', state.selected === j.id);
  }

  let renderPending = false;
  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(render);
  }

  function render() {
    renderPending = false;
    pruneJobs();
    const list = [...state.jobs.values()]
      .filter((j) => !state.filter || j.status === state.filter)
      .sort((a, b) => (b.createdAt - a.createdAt) || ((b.queuePosition || 0) - (a.queuePosition || 0)) ||
                      (a.id < b.id ? -1 : 1))
      .slice(0, SHOWN_JOBS);
    const tbody = $('jobs').tBodies[0];
    const keep = new Set(list.map((j) => j.id));
    for (const [id, tr] of state.rows) {
      if (!keep.has(id)) { tr.remove(); state.rows.delete(id); }
    }
    let prev = null;
    for (const j of list) {
      let tr = state.rows.get(j.id);
      if (!tr) { tr = newRow(j); state.rows.set(j.id, tr); }
      updateRow(tr, j);
      // Move a row only when it is out of place, so a focused button keeps focus.
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== tr) tbody.insertBefore(tr, want);
      prev = tr;
    }
    $('j-empty').hidden = list.length > 0;
    $('j-empty').textContent = state.filter ? 'No ' + state.filter + ' jobs.' : 'No jobs yet.';
    const count = list.length + (list.length === 1 ? ' job' : ' jobs') + ' shown';
    if ($('j-count').textContent !== count) $('j-count').textContent = count;
  }

  async function cancelJob(id, btn) {
    const j = state.jobs.get(id);
    if (btn) btn.disabled = true;
    try {
      const r = await apiJson('/jobs/' + encodeURIComponent(id), { method: 'DELETE' });
      if (r.status === 200 || r.status === 202) {
        upsertJob(r.body);
        announce(r.status === 200 ? 'Canceled ' + jobLabel(r.body) + '.' : 'Cancel requested for ' + jobLabel(r.body) + '.');
        if (r.status === 202) {
          // Learn the final state at once, with or without the event stream.
          const w = await apiJson('/jobs/' + encodeURIComponent(id) + '?wait=30');
          if (w.ok) upsertJob(w.body);
        }
      } else if (r.status === 409) {
        const g = await apiJson('/jobs/' + encodeURIComponent(id));
        if (g.ok) upsertJob(g.body);
        announce((j ? jobLabel(j) : 'The job') + ' had already finished.');
      } else {
        announce('Cancel failed: ' + errorText(r));
      }
    } catch (e) {
      announce('Cancel failed: ' + e.message);
    } finally {
      if (btn) btn.disabled = false;
    }
  }

  $('jobs').addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-act]');
    if (!b) return;
    const id = b.closest('tr').dataset.id;
    if (b.dataset.act === 'cancel') cancelJob(id, b);
    else if (b.dataset.act === 'open') openDetail(id, true);
  });

  $('j-filter').addEventListener('change', () => {
    state.filter = $('j-filter').value;
    scheduleRender();
    refreshJobs().catch(() => {});
  });

  // ---- the job's detail ---------------------------------------------------

  let logTimer = null;
  let detailPending = false;

  function scheduleDetail() {
    if (detailPending) return;
    detailPending = true;
    requestAnimationFrame(() => { detailPending = false; renderDetail(); });
  }

  async function openDetail(id, focus) {
    state.selected = id;
    $('detail').hidden = false;
    for (const [rid, tr] of state.rows) tr.classList.toggle('sel', rid === id);
    renderDetail();
    if (focus) $('detail-h').focus();
    try {
      const r = await apiJson('/jobs/' + encodeURIComponent(id));
      if (r.ok) upsertJob(r.body);
      else if (r.status === 404) announce('That job is gone (expired).');
    } catch (e) { /* the stream or the next poll will tell */ }
    renderDetail();
    refreshLog();
  }

  function closeDetail() {
    const id = state.selected;
    state.selected = null;
    $('detail').hidden = true;
    clearTimeout(logTimer);
    scheduleRender();
    const tr = id && state.rows.get(id);
    if (tr) tr.querySelector('[data-act=open]').focus();
    else $('jobs-h').focus();
  }
  $('d-close').addEventListener('click', closeDetail);

  // Secrets are redacted by the server already; the form's spec says which
  // params are secret, and those are never shown even if a value slipped by.
  function redacted(j) {
    const t = state.taskByName.get(j.task);
    const out = Object.assign({}, j.params || {});
    for (const p of (t && t.params) || []) {
      if (p.secret && p.name in out) out[p.name] = '[redacted]';
    }
    return out;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function renderDetail() {
    const j = state.jobs.get(state.selected);
    if (!j) return;
    setText($('detail-h'), j.task + ' job');
    const kv = $('d-kv');
    const rows = [
      ['ID', j.id],
      ['Status', j.status + (j.status === 'queued' && j.queuePosition ? ' (#' + j.queuePosition + ' in queue)' : '')],
      ['Progress', pct(j.progress)],
      ['Created', fmtTime(j.createdAt)],
      ['Started', fmtTime(j.startedAt)],
      ['Finished', fmtTime(j.finishedAt)],
      ['Attempts', String(j.attempts) + (j.retries ? ' of ' + (j.retries + 1) : '')],
    ];
    if (kv.children.length !== rows.length * 2) {
      kv.textContent = '';
      for (const [k] of rows) kv.append(el('dt', {}, k), el('dd'));
    }
    const running = j.status === 'processing';
    rows.forEach(([, v], i) => { if (!(running && i === 2)) setText(kv.children[i * 2 + 1], v); });
    const progDd = kv.children[5]; // the dd of 'Progress': a bar while the job runs
    if (running) {
      let bar = progDd.querySelector('progress');
      if (!bar) {
        progDd.textContent = '';
        bar = el('progress', { max: '1', 'aria-label': 'Progress' });
        progDd.append(bar, el('span', { class: 'pct' }));
      }
      bar.value = j.progress || 0;
      setText(progDd.lastChild, pct(j.progress));
    }

    const acts = $('d-actions');
    let cancel = acts.querySelector('button');
    if (!FINAL.has(j.status) && !cancel) {
      cancel = el('button', { type: 'button', class: 'danger' }, 'Cancel job');
      cancel.addEventListener('click', () => cancelJob(state.selected, cancel));
      acts.append(cancel);
    } else if (FINAL.has(j.status) && cancel) {
      const hadFocus = document.activeElement === cancel;
      cancel.remove();
      if (hadFocus) $('detail-h').focus();
    }

    setText($('d-params'), JSON.stringify(redacted(j), null, 2));
    $('d-result-box').hidden = j.result === null || j.result === undefined;
    if (!$('d-result-box').hidden) setText($('d-result'), JSON.stringify(j.result, null, 2));
    $('d-error-box').hidden = !j.error;
    if (j.error) setText($('d-error'), j.error.code + ': ' + j.error.message);

    const files = Array.isArray(j.files) ? j.files : [];
    $('d-files-box').hidden = files.length === 0;
    const key = files.map((f) => f.url).join('\n');
    const ul = $('d-files');
    if (ul.dataset.key !== key) {
      ul.dataset.key = key;
      ul.textContent = '';
      for (const f of files) {
        const li = el('li');
        const a = el('a', { href: f.url, download: f.name }, f.name);
        li.append(a, document.createTextNode(' (' + f.contentType + ', ' + fmtBytes(f.bytes) + ')'));
        ul.append(li);
      }
    }
    const t = state.taskByName.get(j.task);
    $('d-log-box').hidden = !(t && t.log);
  }

  function fmtBytes(n) {
    if (typeof n !== 'number') return '?';
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1024 / 1024).toFixed(1) + ' MiB';
  }

  // With a token, a plain link would go without it: fetch and save instead.
  $('d-files').addEventListener('click', async (ev) => {
    const a = ev.target.closest('a');
    if (!a || !token) return;
    ev.preventDefault();
    try {
      const r = await api(a.getAttribute('href'));
      if (!r.ok) { announce('Download failed: HTTP ' + r.status); return; }
      const url = URL.createObjectURL(await r.blob());
      const tmp = el('a', { href: url, download: a.getAttribute('download') || 'download' });
      document.body.append(tmp);
      tmp.click();
      tmp.remove();
      setTimeout(() => URL.revokeObjectURL(url), 30000);
    } catch (e) {
      announce('Download failed: ' + e.message);
    }
  });

  // The log's tail (command tasks only: GET /tasks marks them "log": true),
  // again every 2 s while the job runs.
  async function refreshLog() {
    clearTimeout(logTimer);
    const id = state.selected;
    const j = state.jobs.get(id);
    const t = j && state.taskByName.get(j.task);
    if (!j || !t || !t.log) return;
    try {
      const r = await api('/jobs/' + encodeURIComponent(id) + '/log');
      if (state.selected !== id) return;
      if (r.ok) {
        const pre = $('d-log');
        const text = await r.text();
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        setText(pre, text || '(no output yet)');
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      }
    } catch (e) { /* try again below */ }
    const now = state.jobs.get(id);
    if (state.selected === id && now && !FINAL.has(now.status)) logTimer = setTimeout(refreshLog, 2000);
    else if (state.selected === id && now && FINAL.has(now.status) && !now._logFinal) {
      now._logFinal = true; // one more read: the saved tail of the run
      logTimer = setTimeout(refreshLog, 300);
    }
  }

  // ---- live figures and the 5-minute chart --------------------------------

  function addSample(s) {
    const now = Date.now();
    s.t = now;
    state.samples.push(s);
    while (state.samples.length && state.samples[0].t < now - WINDOW_MS - 2000) state.samples.shift();
    const num = (v, d) => (typeof v === 'number' && isFinite(v) ? v.toFixed(d) : '–');
    setText($('f-queue'), num(s.depth, 0) + (typeof s.capacity === 'number' ? ' / ' + s.capacity : ''));
    setText($('f-workers'), num(s.busy, 0) + ' / ' + num(s.total, 0));
    setText($('f-done'), num(s.done, 1));
    setText($('f-failed'), num(s.failed, 1));
    drawCharts();
  }

  function drawChart(canvas, lines, what) {
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const now = Date.now();
    const x0 = now - WINDOW_MS;
    let max = 1;
    for (const l of lines) for (const s of state.samples) {
      const v = l.get(s);
      if (typeof v === 'number' && v > max) max = v;
    }
    max = niceMax(max);
    const top = 14;
    const y = (v) => h - 2 - (v / max) * (h - top - 2);
    ctx.strokeStyle = '#d0d7de';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, y(max) + 0.5);
    ctx.lineTo(w, y(max) + 0.5);
    ctx.moveTo(0, y(max / 2) + 0.5);
    ctx.lineTo(w, y(max / 2) + 0.5);
    ctx.stroke();
    ctx.fillStyle = '#59636e';
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillText(String(max), 3, 10);
    ctx.fillText('−5 min', 3, h - 4);
    for (const l of lines) {
      ctx.strokeStyle = l.color;
      ctx.lineWidth = l.width || 1.5;
      ctx.beginPath();
      let pen = false;
      for (const s of state.samples) {
        const v = l.get(s);
        if (typeof v !== 'number' || !isFinite(v) || s.t < x0) { pen = false; continue; }
        const px = ((s.t - x0) / WINDOW_MS) * w;
        if (pen) ctx.lineTo(px, y(v)); else ctx.moveTo(px, y(v));
        pen = true;
      }
      ctx.stroke();
    }
    // What a screen reader hears: the figures the chart draws.
    const last = state.samples[state.samples.length - 1];
    const parts = lines.map((l) => {
      let peak = 0;
      for (const s of state.samples) { const v = l.get(s); if (typeof v === 'number' && v > peak) peak = v; }
      const v = last ? l.get(last) : null;
      return l.name + ' now ' + (typeof v === 'number' ? +v.toFixed(1) : 'unknown') + ', peak ' + +peak.toFixed(1);
    });
    canvas.setAttribute('aria-label', what + ', last 5 minutes: ' + parts.join('; ') + '.');
  }

  function niceMax(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  let chartPending = false;
  function drawCharts() {
    if (chartPending) return;
    chartPending = true;
    requestAnimationFrame(() => {
      chartPending = false;
      drawChart($('c-queue'), [{ name: 'queue depth', color: '#0b5cad', get: (s) => s.depth }], 'Queue depth');
      drawChart($('c-workers'), [
        { name: 'total', color: '#8c959f', width: 1, get: (s) => s.total },
        { name: 'busy', color: '#0b5cad', get: (s) => s.busy },
      ], 'Workers');
      drawChart($('c-rate'), [
        { name: 'completed per second', color: '#1a7f37', get: (s) => s.done },
        { name: 'failed per second', color: '#c62828', get: (s) => s.failed },
      ], 'Jobs per second');
    });
  }
  window.addEventListener('resize', drawCharts);

  // ---- the event stream, and the polling fallback ---------------------------

  function onEvent(type, data, id) {
    if (id !== null) state.lastEventId = id;
    if (type === 'job') {
      upsertJob(data);
    } else if (type === 'stats') {
      const q = data.queue || {};
      const wk = data.workers || {};
      addSample({ depth: q.depth, capacity: q.capacity, total: wk.total, busy: wk.busy,
                  done: data.completedPerSec, failed: data.failedPerSec });
    }
  }

  // text/event-stream, as the HTML standard parses it: lines end in CR, LF
  // or CRLF; "field: value"; a blank line dispatches; ":" starts a comment.
  async function readEvents(body) {
    const reader = body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    let ev = { type: '', data: [], id: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      for (;;) {
        const i = buf.search(/[\r\n]/);
        if (i < 0) break;
        if (buf[i] === '\r' && i === buf.length - 1) break; // a CR whose LF may come next
        const line = buf.slice(0, i);
        buf = buf.slice(i + (buf[i] === '\r' && buf[i + 1] === '\n' ? 2 : 1));
        if (line === '') {
          if (ev.data.length) {
            let data = null;
            try { data = JSON.parse(ev.data.join('\n')); } catch (e) { data = null; }
            if (data) onEvent(ev.type || 'message', data, ev.id);
          } else if (ev.id !== null) {
            state.lastEventId = ev.id;
          }
          ev = { type: '', data: [], id: null };
          continue;
        }
        if (line[0] === ':') continue; // keep-alive comment
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let v = c < 0 ? '' : line.slice(c + 1);
        if (v[0] === ' ') v = v.slice(1);
        if (field === 'data') ev.data.push(v);
        else if (field === 'event') ev.type = v;
        else if (field === 'id' && v.indexOf('\0') < 0) ev.id = v;
      }
    }
  }

  async function runEvents() {
    let backoff = 1000;
    for (;;) {
      let r = null;
      try {
        const headers = { Accept: 'text/event-stream' };
        if (state.lastEventId !== null) headers['Last-Event-ID'] = state.lastEventId;
        r = await api('/events', { headers });
      } catch (e) {
        r = null;
      }
      if (r && (r.status === 404 || r.status === 405)) {
        startPolling(); // a server without the stream
        return;
      }
      const type = r ? r.headers.get('Content-Type') || '' : '';
      if (r && r.ok && r.body && type.startsWith('text/event-stream')) {
        state.mode = 'events';
        setConn('Live (event stream)');
        backoff = 1000;
        refreshJobs().catch(() => {});
        try { await readEvents(r.body); } catch (e) { /* dropped */ }
        setConn('Event stream closed; reconnecting…', true);
      } else {
        setConn('Server unreachable; retrying…', true);
      }
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  let prevCounts = null;

  // offload_jobs_total{task,status} summed by status.
  function jobCounts(text) {
    const out = { complete: 0, failed: 0 };
    const re = /^offload_jobs_total\{[^}]*status="(complete|failed)"[^}]*\}\s+([0-9.eE+-]+)\s*$/gm;
    let m;
    while ((m = re.exec(text)) !== null) out[m[1]] += Number(m[2]);
    return out;
  }

  async function pollStats() {
    const [h, mtext] = await Promise.all([
      apiJson('/health'),
      api('/metrics').then((r) => (r.ok ? r.text() : null)).catch(() => null),
    ]);
    if (!h.ok || !h.body) throw new Error(errorText(h));
    let done = null;
    let failed = null;
    if (mtext) {
      const c = jobCounts(mtext);
      const t = performance.now();
      if (prevCounts) {
        const dt = (t - prevCounts.t) / 1000;
        if (dt > 0) {
          done = Math.max(0, (c.complete - prevCounts.complete) / dt);
          failed = Math.max(0, (c.failed - prevCounts.failed) / dt);
        }
      }
      prevCounts = { t, complete: c.complete, failed: c.failed };
    }
    const q = h.body.queue || {};
    const wk = h.body.workers || {};
    addSample({ depth: q.depth, capacity: q.capacity, total: wk.total, busy: wk.busy, done, failed });
  }

  function startPolling() {
    state.mode = 'polling';
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) refreshJobs().catch(() => {});
    });
    const tick = async () => {
      const t0 = performance.now();
      try {
        // A hidden tab keeps the chart's figures, not the table (it catches up when shown).
        await Promise.all([pollStats(), document.hidden ? null : refreshJobs()]);
        setConn('Live (polling once a second: this server has no event stream)');
      } catch (e) {
        setConn('Server unreachable; retrying…', true);
      }
      setTimeout(tick, Math.max(200, 1000 - (performance.now() - t0)));
    };
    tick();
  }

  // ---- workers ----------------------------------------------------------------

  const workerRows = new Map();

  async function pollWorkers() {
    if (!document.hidden) {
      try {
        const r = await apiJson('/workers');
        if (r.ok && r.body && Array.isArray(r.body.workers)) renderWorkers(r.body.workers);
      } catch (e) { /* the connection line says so */ }
    }
    setTimeout(pollWorkers, 2000);
  }

  function renderWorkers(list) {
    const tbody = $('workers').tBodies[0];
    const seen = new Set();
    let prev = null;
    for (const w of list) {
      seen.add(w.id);
      let tr = workerRows.get(w.id);
      if (!tr) {
        tr = el('tr');
        tr.append(el('td', { class: 'num' }), el('td'), el('td'), el('td'), el('td', { class: 'num' }),
                  el('td', { class: 'num opt' }), el('td', { class: 'num opt' }));
        const b = el('button', { type: 'button', class: 'link' });
        b.addEventListener('click', () => { if (b.dataset.id) openDetail(b.dataset.id, true); });
        tr.children[3].append(b);
        workerRows.set(w.id, tr);
      }
      const td = tr.children;
      setText(td[0], String(w.id));
      setText(td[1], w.mode + (w.mode === 'process' ? ' ' + w.pid : ''));
      setText(td[2], w.state);
      const b = td[3].firstChild;
      b.hidden = !w.jobId;
      b.dataset.id = w.jobId || '';
      const job = w.jobId && state.jobs.get(w.jobId);
      setText(b, w.jobId ? (job ? job.task + ' ' : '') + w.jobId.slice(0, 8) + '…' : '');
      if (w.jobId) b.setAttribute('aria-label', 'Job ' + w.jobId + ': details');
      setText(td[4], String(w.jobsDone));
      setText(td[5], (w.cpuMs / 1000).toFixed(1) + ' s');
      setText(td[6], fmtBytes(w.rssBytes));
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== tr) tbody.insertBefore(tr, want);
      prev = tr;
    }
    for (const [id, tr] of workerRows) if (!seen.has(id)) { tr.remove(); workerRows.delete(id); }
  }

  // ---- the submit form, generated from GET /tasks -----------------------------

  const fieldId = (name) => 'p-' + name.replace(/[^A-Za-z0-9_-]/g, '_');

  function describe(p) {
    const bits = [];
    if (p.description) bits.push(p.description);
    if ((p.type === 'integer' || p.type === 'number') && p.min !== undefined) bits.push(p.min + ' to ' + p.max);
    if (p.type.endsWith('[]')) {
      bits.push('comma-separated, ' + p.minItems + ' to ' + p.maxItems + ' items' +
                (p.min !== undefined ? ', each ' + p.min + ' to ' + p.max : ''));
    }
    if (p.format === 'hex') bits.push('hex digits');
    if (p.pattern) bits.push('must match ' + p.pattern);
    if (p.default !== undefined) bits.push('default ' + JSON.stringify(p.default));
    if (p.secret) bits.push('secret: never shown or stored');
    return bits.join('; ');
  }

  function fieldFor(p) {
    const id = fieldId(p.name);
    const wrap = el('div', { class: 'field' });
    const label = el('label', { for: id }, p.name + (p.required ? ' (required)' : ''));
    const hintText = describe(p);
    const hintId = id + '-hint';
    let input;
    if (p.type === 'integer' || p.type === 'number') {
      input = el('input', { type: 'number', step: p.type === 'integer' ? '1' : 'any',
                            inputmode: p.type === 'integer' ? 'numeric' : 'decimal' });
      if (p.min !== undefined) input.min = String(p.min);
      if (p.max !== undefined) input.max = String(p.max);
      if (p.default !== undefined) input.placeholder = String(p.default);
    } else if (p.type === 'boolean') {
      input = el('select');
      if (!p.required) {
        input.append(el('option', { value: '' }, p.default !== undefined ? '(default: ' + p.default + ')' : '(not set)'));
      }
      input.append(el('option', { value: 'true' }, 'true'), el('option', { value: 'false' }, 'false'));
    } else if (p.type === 'string' && Array.isArray(p.enum)) {
      input = el('select');
      if (!p.required && p.default === undefined) input.append(el('option', { value: '' }, '(not set)'));
      for (const v of p.enum) input.append(el('option', { value: v }, v));
      if (p.default !== undefined) input.value = p.default;
    } else if (p.type === 'string' && !p.secret && p.maxLength > 4096) {
      input = el('textarea', { rows: '5' });
    } else if (p.type === 'string') {
      input = el('input', { type: p.secret ? 'password' : 'text', autocomplete: 'off', spellcheck: 'false' });
      if (p.maxLength) input.maxLength = p.maxLength;
      if (p.format === 'hex') input.pattern = '([0-9a-fA-F]{2})*';
    } else { // integer[] / number[]
      input = el('input', { type: 'text', inputmode: 'decimal', autocomplete: 'off' });
      if (p.default !== undefined) input.placeholder = [].concat(p.default).join(',');
    }
    input.id = id;
    input.name = p.name;
    if (p.required) input.required = true;
    input.dataset.param = p.name;
    input.dataset.type = p.type;
    wrap.append(label, input);
    if (hintText) {
      input.setAttribute('aria-describedby', hintId);
      wrap.append(el('p', { id: hintId, class: 'hint' }, hintText));
    }
    return wrap;
  }

  function inputFields(t) {
    const wrap = el('div', { class: 'field' });
    const file = el('input', { type: 'file', id: 'p-input-file', 'aria-describedby': 'p-input-hint' });
    const types = (t.input && t.input.contentTypes) || [];
    if (types.length) file.accept = types.join(',');
    if (t.input.required) file.required = true;
    wrap.append(el('label', { for: 'p-input-file' }, 'Input file' + (t.input.required ? ' (required)' : '')), file,
                el('p', { id: 'p-input-hint', class: 'hint' },
                   'Sent as the request body' + (types.length ? ': ' + types.join(', ') : '') + '.'));
    const out = [wrap];
    if (types.length > 1) {
      const tw = el('div', { class: 'field' });
      const sel = el('select', { id: 'p-input-type' });
      for (const ct of types) sel.append(el('option', { value: ct }, ct));
      file.addEventListener('change', () => {
        const f = file.files[0];
        if (f && types.includes(f.type)) sel.value = f.type;
      });
      tw.append(el('label', { for: 'p-input-type' }, 'Input type'), sel);
      out.push(tw);
    }
    return out;
  }

  function currentTask() {
    return state.taskByName.get($('s-task').value);
  }

  function buildForm() {
    const t = currentTask();
    const box = $('s-params');
    box.textContent = '';
    if (!t) return;
    let desc = t.description || '';
    if (t.timeoutMs) desc += ' Time limit ' + t.timeoutMs + ' ms.';
    setText($('s-task-desc'), desc);
    for (const p of t.params) box.append(fieldFor(p));
    if (t.input) for (const f of inputFields(t)) box.append(f);
    setText($('s-status'), '');
  }

  // The value of one param's control: undefined when left empty (the
  // server's default), or throws with a message for the field.
  function readParam(input) {
    const type = input.dataset.type;
    const raw = input.value.trim();
    if (raw === '') return undefined;
    if (type === 'integer' || type === 'number') return Number(raw);
    if (type === 'boolean') return raw === 'true';
    if (type === 'integer[]' || type === 'number[]') {
      const items = raw.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
      if (items.some((n) => !isFinite(n) || (type === 'integer[]' && !Number.isInteger(n)))) {
        throw new Error('a comma-separated list of ' + (type === 'integer[]' ? 'integers' : 'numbers'));
      }
      return items;
    }
    return input.type === 'password' || input.tagName === 'TEXTAREA' ? input.value : raw;
  }

  function formStatus(text, bad) {
    const s = $('s-status');
    s.textContent = text;
    s.classList.toggle('bad', !!bad);
  }

  async function submitForm(ev) {
    ev.preventDefault();
    const form = $('submit');
    const t = currentTask();
    if (!t) return;
    for (const i of form.querySelectorAll('input, select, textarea')) { i.dataset.touched = '1'; i.setCustomValidity(''); }
    const params = {};
    for (const input of $('s-params').querySelectorAll('[data-param]')) {
      try {
        const v = readParam(input);
        if (v !== undefined) params[input.dataset.param] = v;
      } catch (e) {
        input.setCustomValidity('Enter ' + e.message + '.');
      }
    }
    if (!form.checkValidity()) {
      form.reportValidity();
      formStatus('Check the highlighted fields.', true);
      return;
    }
    const timeoutMs = $('s-timeout').value.trim();
    const retries = $('s-retries').value.trim();
    const file = t.input ? $('p-input-file').files[0] : null;
    const btn = $('s-go');
    btn.disabled = true;
    formStatus('Submitting…');
    try {
      let r;
      if (file) {
        const q = new URLSearchParams();
        for (const [k, v] of Object.entries(params)) q.set(k, Array.isArray(v) ? v.join(',') : String(v));
        if (timeoutMs) q.set('timeoutMs', timeoutMs);
        if (retries) q.set('retries', retries);
        const types = t.input.contentTypes || [];
        const ct = $('p-input-type') ? $('p-input-type').value
          : (types[0] || file.type || 'application/octet-stream');
        const qs = q.toString();
        r = await apiJson('/jobs/' + encodeURIComponent(t.name) + (qs ? '?' + qs : ''),
                          { method: 'POST', headers: { 'Content-Type': ct }, body: file });
      } else {
        const body = { task: t.name, params };
        if (timeoutMs) body.timeoutMs = Number(timeoutMs);
        if (retries) body.retries = Number(retries);
        r = await apiJson('/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                     body: JSON.stringify(body) });
      }
      if ((r.status === 202 || r.status === 200) && r.body && r.body.id) {
        upsertJob(r.body);
        formStatus('Submitted ' + jobLabel(r.body) + '.');
      } else {
        formStatus('Not submitted: ' + errorText(r), true);
        const p = r.body && r.body.error && r.body.error.param;
        const name = p && p.startsWith('params.') ? p.slice(7) : p;
        const field = name && ($(fieldId(name)) || (name === 'timeoutMs' && $('s-timeout')) ||
                               (name === 'retries' && $('s-retries')));
        if (field) field.focus();
      }
    } catch (e) {
      formStatus('Not submitted: ' + e.message, true);
    } finally {
      btn.disabled = false;
    }
  }

  async function loadTasks() {
    for (let wait = 1000; ; wait = Math.min(wait * 2, 10000)) {
      try {
        const r = await apiJson('/tasks');
        if (r.ok && r.body && Array.isArray(r.body.tasks)) {
          state.tasks = r.body.tasks;
          break;
        }
        setConn('Could not list the tasks (' + errorText(r) + '); retrying…', true);
      } catch (e) {
        setConn('Server unreachable; retrying…', true);
      }
      await sleep(wait);
    }
    const sel = $('s-task');
    sel.textContent = '';
    for (const t of state.tasks) {
      state.taskByName.set(t.name, t);
      sel.append(el('option', { value: t.name }, t.name));
    }
    buildForm();
  }

  $('s-task').addEventListener('change', buildForm);
  $('submit').addEventListener('submit', submitForm);

  async function start() {
    await loadTasks();
    runEvents();
    pollWorkers();
  }
  start();
})();
