// SupportTracker console behaviour (served from the binary, no CDN).
//
// Modal forms: a link with hx-get and hx-target="#modal-body" loads a form fragment into the
// page's <dialog id="modal">, which then opens. The form posts back with htmx into the dialog:
// a refused form (422) comes back with its messages in place; a success answers HX-Redirect.
// Without JavaScript the same link opens a full page with the same form.
document.addEventListener("htmx:afterSwap", function (event) {
  var target = event.detail.target;
  if (!target || target.id !== "modal-body") return;
  var dialog = document.getElementById("modal");
  if (!dialog.open) dialog.showModal();
  var first = dialog.querySelector("[aria-invalid=true], input:not([type=hidden]), select, textarea");
  if (first) first.focus();
});
document.addEventListener("click", function (event) {
  if (event.target.closest("[data-close-modal]")) {
    document.getElementById("modal").close();
  }
});

// The header's search box: suggestions arrive under it as you type (htmx); ArrowDown and
// ArrowUp move through them, Escape closes them, Enter on the box opens the full results.
(function () {
  function options() {
    return Array.prototype.slice.call(document.querySelectorAll("#search-suggest [role=option]"));
  }
  function setExpanded() {
    var box = document.getElementById("global-search");
    if (box) box.setAttribute("aria-expanded", options().length > 0 ? "true" : "false");
  }
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "search-suggest") setExpanded();
  });
  document.addEventListener("keydown", function (event) {
    var box = document.getElementById("global-search");
    var panel = document.getElementById("search-suggest");
    if (!box || !panel) return;
    var inBox = event.target === box;
    var inPanel = panel.contains(event.target);
    if (!inBox && !inPanel) return;
    var list = options();
    var at = list.indexOf(document.activeElement);
    if (event.key === "ArrowDown" && list.length) {
      event.preventDefault();
      list[Math.min(at + 1, list.length - 1)].focus();
    } else if (event.key === "ArrowUp" && list.length) {
      event.preventDefault();
      if (at <= 0) box.focus(); else list[at - 1].focus();
    } else if (event.key === "Escape") {
      panel.innerHTML = "";
      setExpanded();
      box.focus();
    }
  });
})();
