// rclaude dashboard live updates (progressive enhancement: every page works without this).
//
// The page's cookie session authenticates the WebSocket, so no token is ever exposed to the page.
// Sessions list: subscribes to /v1/events; for each event it fetches the server-rendered row of
// that session (/sessions/{id}/section) and updates or inserts it. Session page: subscribes to
// /v1/sessions/{id}/events and refreshes the summary, tasks and timeline from the server.
(function () {
  "use strict";
  var root = document.querySelector("[data-live]");
  var status = document.getElementById("live-status");
  if (!root || !("WebSocket" in window) || !window.fetch) return;

  function say(text) { if (status) status.textContent = text; }

  function fetchHtml(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (!r.ok || r.redirected) throw new Error("HTTP " + r.status);
        return r.text();
      });
  }

  function parse(html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    return t.content;
  }

  function sectionFor(repo) {
    var all = root.querySelectorAll("section[data-repository]");
    for (var i = 0; i < all.length; i++) {
      if (all[i].getAttribute("data-repository") === repo) return all[i];
    }
    return null;
  }

  // ---- sessions list -------------------------------------------------------------------------
  var pending = {};
  function updateSession(session) {
    var id = session.id;
    var existing = document.getElementById("s-" + id);
    var filterRepo = root.getAttribute("data-filter-repository");
    var filterState = root.getAttribute("data-filter-state");
    var mayInsert = root.getAttribute("data-insert") === "yes" &&
      (!filterRepo || filterRepo === session.repository) &&
      (!filterState || filterState === session.state);
    if (!existing && !mayInsert) return;
    if (pending[id]) { pending[id] = "again"; return; }
    pending[id] = "busy";
    // Totals are only needed (and only computed) when a new row goes in.
    var url = "/sessions/" + encodeURIComponent(id) + "/section" + (existing ? "" : "?totals=1");
    fetchHtml(url).then(function (html) {
      var frag = parse(html);
      var fresh = frag.querySelector("section[data-repository]");
      var row = frag.querySelector("tr[data-session]");
      if (!fresh || !row) return;
      var repo = fresh.getAttribute("data-repository");
      var current = document.getElementById("s-" + id);
      var section = sectionFor(repo);
      if (current) {
        current.replaceWith(row);
      } else if (section) {
        section.querySelector("tbody").prepend(row);
        var limit = parseInt(root.getAttribute("data-per-repo"), 10) || 10;
        var rows = section.querySelectorAll("tbody tr");
        for (var i = limit; i < rows.length; i++) rows[i].remove();
        say("New session " + id.slice(0, 8) + " in " + repo + ".");
      } else {
        var empty = document.getElementById("empty");
        if (empty) empty.remove();
        root.prepend(fresh);
        say("New session " + id.slice(0, 8) + " in " + repo + ".");
      }
      row.classList.add("fresh");
      var freshSummary = frag.getElementById("account-summary");
      var summary = document.getElementById("account-summary");
      if (freshSummary && summary) summary.replaceWith(freshSummary);
      var cap = section && section.querySelector("caption");
      var freshCap = fresh.querySelector("caption");
      if (cap && freshCap && section !== fresh) cap.textContent = freshCap.textContent;
    }).catch(function () { /* the next event or a reload catches up */ })
      .then(function () {
        // At most one refresh per session per second; a burst of events becomes one more.
        setTimeout(function () {
          var again = pending[id] === "again";
          delete pending[id];
          if (again) updateSession(session);
        }, 1000);
      });
  }

  // ---- one session ---------------------------------------------------------------------------
  var refreshTimer = null;
  function refreshSession() {
    if (root.getAttribute("data-latest") !== "yes") return;
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      fetchHtml(location.pathname).then(function (html) {
        var doc = parse(html);
        ["summary", "tasks", "timeline"].forEach(function (id) {
          var fresh = doc.getElementById(id);
          var old = document.getElementById(id);
          if (fresh && old) old.replaceWith(fresh);
        });
      }).catch(function () {});
    }, 200);
  }

  // ---- the socket ----------------------------------------------------------------------------
  var kind = root.getAttribute("data-live");
  var lastSeq = parseInt(root.getAttribute("data-last-seq") || "0", 10);
  var delay = 1000;
  var opened = false;
  function connect() {
    var proto = location.protocol === "https:" ? "wss:" : "ws:";
    var path = kind === "session"
      ? "/v1/sessions/" + encodeURIComponent(root.getAttribute("data-session")) + "/events?since_seq=" + lastSeq
      : "/v1/events";
    var ws = new WebSocket(proto + "//" + location.host + path);
    ws.onopen = function () {
      delay = 1000;
      say("Live: updates appear as they happen.");
      root.setAttribute("data-connected", "yes");
      if (opened && kind === "session") refreshSession();
      opened = true;
    };
    ws.onmessage = function (e) {
      var m;
      try { m = JSON.parse(e.data); } catch (err) { return; }
      if (!m || !m.session || !m.event) return;
      if (kind === "session") {
        if (m.event.seq > lastSeq) lastSeq = m.event.seq;
        refreshSession();
      } else {
        updateSession(m.session);
      }
    };
    ws.onclose = function () {
      root.setAttribute("data-connected", "no");
      say("Live updates paused; reconnecting…");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
