// Loyalty Bridge console behaviour. Loaded as a file (the CSP allows no inline script).
(function () {
  "use strict";

  function announce(text) {
    var live = document.getElementById("live");
    if (live) { live.textContent = text; }
  }

  // htmx requests carry the session's CSRF token in a header.
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) { event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content"); }
  });

  // Copy buttons: data-copy-target names the element whose text is copied.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    if (!source || !navigator.clipboard) { return; }
    navigator.clipboard.writeText(source.textContent).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      announce("Copied to the clipboard");
      setTimeout(function () { button.textContent = label; }, 1500);
    }, function () { announce("Copying failed: select the text and copy it by hand"); });
  });

  // Typed confirmations: the submit button is enabled once the typed text matches.
  function syncConfirmation(input) {
    var form = input.form;
    var button = form && form.querySelector("[data-confirm-submit]");
    if (button) { button.disabled = input.value !== input.getAttribute("data-confirm-value"); }
  }
  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("[data-confirm-value]")) { syncConfirmation(event.target); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-confirm-value]").forEach(syncConfirmation);
  });
})();
