// Copy button for the API token secret (token_created.html). Without JavaScript or clipboard
// access the secret stays selectable in its read-only field and the message says so.
(function () {
  "use strict";

  function setup(button) {
    var field = document.getElementById(button.dataset.copyTarget);
    var status = document.getElementById(button.dataset.copyStatus);
    if (!field || !status) {
      return;
    }

    function fallback() {
      field.focus();
      field.select();
      status.textContent = "Copying is not available here: the token is selected, press Ctrl+C (⌘C on a Mac) to copy it.";
      status.className = "copy-status copy-failed";
    }

    button.hidden = false;
    button.addEventListener("click", function () {
      if (!navigator.clipboard || !window.isSecureContext) {
        fallback();
        return;
      }
      navigator.clipboard.writeText(field.value).then(
        function () {
          status.textContent = "Copied to the clipboard.";
          status.className = "copy-status copy-ok";
          button.textContent = "Copied";
        },
        fallback
      );
    });
    field.addEventListener("focus", function () {
      field.select();
    });
  }

  document.querySelectorAll("[data-copy-target]").forEach(setup);
})();
