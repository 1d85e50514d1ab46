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
