// hvha dashboard: live updates (docs/dashboard.md, "Live updates").
//
// Opens EventSource('/stream'), keeps document.body.dataset.live at 'connected' or
// 'lost', and applies each snapshot to the rows of the page (the DOM contract of
// docs/dashboard.md): VM rows (attributes and cells), monitor rows, host rows, counts;
// new relocation, event and activity rows are inserted. Every value is written with
// textContent or setAttribute, never as HTML. Ages (data-since-ms) tick every second,
// corrected for the difference between this browser's clock and the server's.
(function () {
  'use strict';

  var body = document.body;
  var skew = 0; // server clock minus browser clock, ms
  if (body.dataset.nowMs) {
    skew = Number(body.dataset.nowMs) - Date.now();
  }

  function serverNow() {
    return Date.now() + skew;
  }

  function ageText(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) { return s + ' s'; }
    if (s < 3600) { return Math.floor(s / 60) + ' min ' + (s % 60) + ' s'; }
    if (s < 86400) { return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min'; }
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }

  function utc(ms) {
    var d = new Date(ms);
    function two(n) { return (n < 10 ? '0' : '') + n; }
    return d.getUTCFullYear() + '-' + two(d.getUTCMonth() + 1) + '-' + two(d.getUTCDate()) +
      ' ' + two(d.getUTCHours()) + ':' + two(d.getUTCMinutes()) + ':' + two(d.getUTCSeconds());
  }

  function tickAges() {
    var now = serverNow();
    var cells = document.querySelectorAll('[data-since-ms]');
    for (var i = 0; i < cells.length; i++) {
      var t = Number(cells[i].getAttribute('data-since-ms'));
      if (!isNaN(t)) {
        cells[i].textContent = ageText(now - t);
      }
    }
  }

  function setText(row, selector, text) {
    var cell = row.querySelector(selector);
    if (cell && cell.textContent !== text) {
      cell.textContent = text;
    }
  }

  function setAttr(el, name, value) {
    if (el.getAttribute(name) !== value) {
      el.setAttribute(name, value);
    }
  }

  function cssEscape(text) {
    if (window.CSS && window.CSS.escape) { return window.CSS.escape(text); }
    return String(text).replace(/["\\]/g, '\\$&');
  }

  function td(text, cls) {
    var cell = document.createElement('td');
    if (cls) { cell.className = cls; }
    cell.textContent = text;
    return cell;
  }

  function linkTd(href, text, cls) {
    var cell = document.createElement('td');
    if (cls) { cell.className = cls; }
    var a = document.createElement('a');
    a.href = href;
    a.textContent = text;
    cell.appendChild(a);
    return cell;
  }

  function timeTd(ms, cls) {
    var cell = document.createElement('td');
    if (cls) { cell.className = cls; }
    if (ms === null || ms === undefined) {
      cell.textContent = '-';
      return cell;
    }
    var t = document.createElement('time');
    t.setAttribute('data-ms', String(ms));
    t.textContent = utc(ms);
    cell.appendChild(t);
    return cell;
  }

  function replaceTime(row, selector, ms) {
    var cell = row.querySelector(selector);
    if (!cell) { return; }
    var t = cell.querySelector('time');
    var now = t ? Number(t.getAttribute('data-ms')) : null;
    if (ms === null || ms === undefined) {
      if (t) { cell.textContent = '-'; }
      return;
    }
    if (now === ms) { return; }
    cell.parentNode.replaceChild(timeTd(ms, cell.className), cell);
  }

  // Elements matching `selector`, grouped by their attribute `attr`: one pass over the
  // page per snapshot instead of one query per VM.
  function index(selector, attr) {
    var out = {};
    var els = document.querySelectorAll(selector);
    for (var i = 0; i < els.length; i++) {
      var key = els[i].getAttribute(attr);
      (out[key] = out[key] || []).push(els[i]);
    }
    return out;
  }

  function applyVms(vms) {
    var vmRows = index('tr[data-uuid]', 'data-uuid');
    var hbIndex = index('tr[data-vm-hb]', 'data-vm-hb');
    for (var i = 0; i < vms.length; i++) {
      var vm = vms[i];
      var rows = vmRows[vm.uuid] || [];
      for (var j = 0; j < rows.length; j++) {
        var row = rows[j];
        setAttr(row, 'data-vm', vm.name);
        setAttr(row, 'data-state', vm.state);
        setAttr(row, 'data-health', vm.health);
        setText(row, 'td.vm-state', vm.state);
        setText(row, 'td.vm-health', vm.health);
        var h = row.querySelector('td.vm-health');
        if (h) { setAttr(h, 'title', vm.health_why || 'heartbeats arrive'); }
        setText(row, 'td.vm-host', vm.host);
        setText(row, 'td.vm-home', vm.home_host);
        setText(row, 'td.vm-managed', vm.managed ? 'yes' : 'no');
        setText(row, 'td.vm-heartbeat', vm.heartbeat);
      }
      // No monitors list: every monitor's row is DETECTED with no miss.
      var hbRows = hbIndex[vm.uuid] || [];
      for (var k = 0; k < hbRows.length; k++) {
        var hb = hbRows[k];
        var m = { state: 'DETECTED', missed_since_ms: null };
        if (vm.monitors) {
          m = null;
          for (var n = 0; n < vm.monitors.length; n++) {
            if (vm.monitors[n].hm === hb.getAttribute('data-hm')) { m = vm.monitors[n]; }
          }
          if (!m) { continue; }
        }
        setAttr(hb, 'data-state', m.state);
        setText(hb, 'td.hb-state', m.state);
        var cell = hb.querySelector('td.hb-missed');
        if (cell) {
          if (m.missed_since_ms === null || m.missed_since_ms === undefined) {
            cell.removeAttribute('data-since-ms');
            cell.textContent = '-';
          } else {
            setAttr(cell, 'data-since-ms', String(m.missed_since_ms));
          }
        }
      }
    }
  }

  function applyMonitors(monitors) {
    for (var i = 0; i < monitors.length; i++) {
      var m = monitors[i];
      var rows = document.querySelectorAll('tr[data-hm="' + cssEscape(m.uuid) + '"]:not([data-vm-hb])');
      for (var j = 0; j < rows.length; j++) {
        setAttr(rows[j], 'data-state', m.state);
        var st = rows[j].querySelector('td.hm-state');
        if (st && st.textContent.indexOf(m.state) !== 0) { st.textContent = m.state; }
        var age = rows[j].querySelector('td.hm-age');
        if (age) { setAttr(age, 'data-since-ms', String(m.last_hb_ms)); }
        setText(rows[j], 'td.hm-incarnation', m.incarnation);
      }
    }
  }

  function applyHosts(hosts) {
    for (var i = 0; i < hosts.length; i++) {
      var rows = document.querySelectorAll('tr[data-host="' + cssEscape(hosts[i].name) + '"]');
      for (var j = 0; j < rows.length; j++) {
        setAttr(rows[j], 'data-maintenance', hosts[i].maintenance ? 'yes' : 'no');
      }
    }
  }

  function applyCounts(counts) {
    var els = document.querySelectorAll('[data-count]');
    for (var i = 0; i < els.length; i++) {
      var key = els[i].getAttribute('data-count');
      if (Object.prototype.hasOwnProperty.call(counts, key)) {
        var text = String(counts[key]);
        if (els[i].textContent !== text) { els[i].textContent = text; }
      }
    }
  }

  function reasonsTd(text) {
    if (text === null || text === undefined || text.trim() === '') {
      var none = td('\u2014', 'reasons none');
      return none;
    }
    return td(text, 'reasons');
  }

  function relocationRow(r, withVm) {
    var tr = document.createElement('tr');
    tr.setAttribute('data-relocation', String(r.id));
    tr.setAttribute('data-vm', r.vm);
    tr.setAttribute('data-vm-uuid', r.vm_uuid);
    tr.setAttribute('data-kind', r.kind);
    tr.setAttribute('data-phase', r.phase);
    tr.setAttribute('data-outcome', outcome(r));
    tr.appendChild(linkTd('/relocation/' + r.id, String(r.id)));
    if (withVm) { tr.appendChild(linkTd('/vm/' + encodeURIComponent(r.vm_uuid), r.vm)); }
    tr.appendChild(td(r.kind, 'kind'));
    tr.appendChild(td(r.cause || '-', 'cause'));
    tr.appendChild(td(r.from, 'from'));
    tr.appendChild(td(r.to, 'to'));
    tr.appendChild(td(r.phase, 'phase'));
    tr.appendChild(timeTd(r.started_ms));
    tr.appendChild(timeTd(r.ended_ms));
    tr.appendChild(td(resultText(r), 'result'));
    tr.appendChild(td('', 'steps'));
    tr.appendChild(reasonsTd(r.reasons));
    return tr;
  }

  function outcome(r) {
    if (r.ended_ms === null) { return 'in-progress'; }
    if (r.result && r.result.toLowerCase().indexOf('success') === 0) { return 'succeeded'; }
    return 'failed';
  }

  function resultText(r) {
    if (r.result !== null) { return r.result; }
    return r.ended_ms === null ? 'in progress' : '-';
  }

  function applyRelocations(list) {
    var bodies = document.querySelectorAll('tbody[data-live="relocations"]');
    for (var b = 0; b < bodies.length; b++) {
      var tbody = bodies[b];
      var filter = tbody.getAttribute('data-vm-filter');
      var withVm = !filter;
      // Oldest first, so each new row goes on top in the end.
      for (var i = list.length - 1; i >= 0; i--) {
        var r = list[i];
        if (filter && r.vm_uuid !== filter) { continue; }
        var row = tbody.querySelector('tr[data-relocation="' + r.id + '"]');
        if (!row) {
          var empty = tbody.querySelector('tr.empty');
          if (empty) { empty.parentNode.removeChild(empty); }
          tbody.insertBefore(relocationRow(r, withVm), tbody.firstChild);
          continue;
        }
        setAttr(row, 'data-phase', r.phase);
        setAttr(row, 'data-outcome', outcome(r));
        setAttr(row, 'data-vm', r.vm);
        setText(row, 'td.phase', r.phase);
        if (r.cause) { setText(row, 'td.cause', r.cause); }
        setText(row, 'td.to', r.to);
        setText(row, 'td.result', resultText(r));
        var cell = row.querySelector('td.reasons');
        if (cell && r.reasons && cell.textContent !== r.reasons) {
          cell.textContent = r.reasons;
          cell.className = 'reasons';
        }
      }
    }
  }

  function eventMatches(e, filter) {
    if (!filter || filter === 'all') { return true; }
    if (filter === 'maintenance') { return e.maintenance; }
    return e.severity === filter;
  }

  function applyEvents(list) {
    var bodies = document.querySelectorAll('tbody[data-live="events"]');
    for (var b = 0; b < bodies.length; b++) {
      var tbody = bodies[b];
      var filter = tbody.getAttribute('data-filter');
      for (var i = list.length - 1; i >= 0; i--) {
        var e = list[i];
        if (!eventMatches(e, filter)) { continue; }
        if (tbody.querySelector('tr[data-event="' + e.id + '"]')) { continue; }
        var first = tbody.querySelector('tr[data-event]');
        if (first && Number(first.getAttribute('data-event')) > e.id) { continue; }
        var empty = tbody.querySelector('tr.empty');
        if (empty) { empty.parentNode.removeChild(empty); }
        var tr = document.createElement('tr');
        tr.setAttribute('data-event', String(e.id));
        tr.setAttribute('data-severity', e.severity);
        tr.setAttribute('data-kind', e.kind);
        tr.setAttribute('data-maintenance', e.maintenance ? 'yes' : 'no');
        tr.setAttribute('data-href', '/event/' + e.id);
        tr.appendChild(linkTd('/event/' + e.id, String(e.id)));
        tr.appendChild(timeTd(e.created_ms));
        tr.appendChild(td(e.severity, 'severity'));
        tr.appendChild(td(e.kind, 'kind'));
        if (e.vm_uuid) {
          tr.appendChild(linkTd('/vm/' + encodeURIComponent(e.vm_uuid), e.vm));
        } else {
          tr.appendChild(td('-'));
        }
        tr.appendChild(td('-'));
        tr.appendChild(td(e.text, 'text'));
        tbody.insertBefore(tr, tbody.firstChild);
      }
    }
  }

  function applyActivities(list) {
    if (!list) { return; }
    var bodies = document.querySelectorAll('tbody[data-live="activities"]');
    for (var b = 0; b < bodies.length; b++) {
      var tbody = bodies[b];
      for (var i = list.length - 1; i >= 0; i--) {
        var a = list[i];
        var row = tbody.querySelector('tr[data-activity="' + a.id + '"]');
        if (!row) {
          var empty = tbody.querySelector('tr.empty');
          if (empty) { empty.parentNode.removeChild(empty); }
          row = document.createElement('tr');
          row.setAttribute('data-activity', String(a.id));
          row.setAttribute('data-kind', a.kind);
          row.setAttribute('data-state', a.state);
          row.appendChild(td(String(a.id)));
          row.appendChild(td(a.group, 'group'));
          row.appendChild(td(a.label, 'kind'));
          row.appendChild(td(a.state, 'state'));
          row.appendChild(td(a.requested_by, 'by'));
          row.appendChild(timeTd(a.created_ms));
          row.appendChild(timeTd(a.started_ms, 'started'));
          row.appendChild(timeTd(a.ended_ms, 'ended'));
          row.appendChild(td(a.progress, 'progress'));
          row.appendChild(td(a.summary === null ? '-' : a.summary, 'summary'));
          tbody.insertBefore(row, tbody.firstChild);
          continue;
        }
        setAttr(row, 'data-state', a.state);
        setText(row, 'td.state', a.state);
        replaceTime(row, 'td.started', a.started_ms);
        replaceTime(row, 'td.ended', a.ended_ms);
        setText(row, 'td.progress', a.progress);
        setText(row, 'td.summary', a.summary === null ? '-' : a.summary);
      }
    }
  }

  function apply(doc) {
    if (doc.error) { return; }
    applyVms(doc.vms || []);
    applyMonitors(doc.monitors || []);
    applyHosts(doc.hosts || []);
    applyCounts(doc.counts || {});
    applyRelocations(doc.relocations || []);
    applyEvents(doc.events || []);
    applyActivities(doc.activities);
    tickAges();
  }

  function setLive(state) {
    body.dataset.live = state;
    var text = document.querySelector('.live-text');
    if (text) {
      text.textContent = state === 'connected' ? 'live' : (state === 'lost' ? 'reconnecting' : state);
    }
  }

  function connect() {
    if (!window.EventSource) {
      setLive('unsupported');
      return;
    }
    var source = new EventSource('/stream');
    source.addEventListener('open', function () { setLive('connected'); });
    source.addEventListener('error', function () { setLive('lost'); });
    source.addEventListener('snapshot', function (ev) {
      var doc;
      try {
        doc = JSON.parse(ev.data);
      } catch (err) {
        return;
      }
      setLive('connected');
      apply(doc);
    });
  }

  // Rows that lead to a page (events): a click anywhere on the row follows it.
  document.addEventListener('click', function (ev) {
    var target = ev.target;
    if (target.closest && target.closest('a, button, input, select, summary, form')) { return; }
    var row = target.closest ? target.closest('tr[data-href]') : null;
    if (row) { window.location.assign(row.getAttribute('data-href')); }
  });

  setLive('connecting');
  tickAges();
  window.setInterval(tickAges, 1000);
  connect();
}());
