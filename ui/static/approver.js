// The approver's pages: the inbox's `r` opens an invoice at its reason field, ready to type.
(function () {
  "use strict";
  function focusReason() {
    if (window.location.hash === "#reason") {
      var field = document.getElementById("reason");
      if (field) { field.focus(); }
    }
  }
  document.addEventListener("DOMContentLoaded", focusReason);
  window.addEventListener("hashchange", focusReason);
})();
