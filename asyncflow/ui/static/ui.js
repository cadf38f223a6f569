// asyncflow run viewer: while a run is live, poll this page's live region and
// swap it in (no reload). Served from this server only; no framework.
(function () {
  "use strict";
  var PERIOD = 1500;
  function openDetails(root) {
    var open = {};
    root.querySelectorAll("details[id]").forEach(function (d) { if (d.open) open[d.id] = true; });
    return open;
  }
  function poll() {
    var live = document.getElementById("live");
    if (!live || live.dataset.live !== "1") return;
    fetch(location.href, { headers: { "X-Asyncflow-Partial": "1" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        var still = response.headers.get("X-Asyncflow-Live") === "1";
        return response.text().then(function (html) { return { html: html, still: still, ok: response.ok }; });
      })
      .then(function (got) {
        if (!got.ok) { setTimeout(poll, PERIOD * 2); return; }
        var active = document.activeElement;
        var typing = active && live.contains(active) && (active.tagName === "INPUT" || active.tagName === "TEXTAREA");
        if (!typing && got.html !== live.dataset.last) {
          var open = openDetails(live);
          live.innerHTML = got.html;
          live.dataset.last = got.html;
          Object.keys(open).forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
        }
        live.dataset.live = got.still ? "1" : "0";
        if (got.still || typing) setTimeout(poll, PERIOD);
      })
      .catch(function () { setTimeout(poll, PERIOD * 2); });
  }
  document.addEventListener("DOMContentLoaded", function () { setTimeout(poll, PERIOD); });
})();
