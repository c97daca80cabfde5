// Cashcycle's pages: server-rendered HTML with htmx; this file adds only what HTML cannot say.
// - data-confirm on a form: ask before sending (a consequential action: approve, reject, reassign...).
// - keyboard lists (data-keylist): j/k move, Enter opens, and keys named by data-key act on the current row.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !form.dataset.confirmed) {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        event.stopImmediatePropagation();
      }
    }
  }, true);

  // htmx validates before sending; the confirmation above runs for htmx forms too (htmx listens to submit).

  function rows(list) { return Array.prototype.slice.call(list.querySelectorAll("[data-row]")); }

  function focusRow(list, index) {
    var all = rows(list);
    if (!all.length) { return; }
    index = Math.max(0, Math.min(index, all.length - 1));
    all.forEach(function (r) { r.classList.remove("is-current"); r.removeAttribute("aria-current"); });
    var row = all[index];
    row.classList.add("is-current");
    row.setAttribute("aria-current", "true");
    var link = row.querySelector("a[href]");
    (link || row).focus();
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) { return; }
    var t = event.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) { return; }
    var list = document.querySelector("[data-keylist]");
    if (!list) { return; }
    var all = rows(list);
    var current = all.findIndex(function (r) { return r.classList.contains("is-current"); });
    if (event.key === "j") { focusRow(list, current + 1); event.preventDefault(); }
    else if (event.key === "k") { focusRow(list, current < 0 ? 0 : current - 1); event.preventDefault(); }
    else if (event.key === "Enter" && current >= 0 && !(t instanceof HTMLButtonElement)) {
      var link = all[current].querySelector("a[href]");
      if (link) { window.location.href = link.href; event.preventDefault(); }
    } else if (current >= 0) {
      var button = all[current].querySelector('[data-key="' + event.key + '"]');
      if (button) { event.preventDefault(); button.click(); }
    }
  });
})();
