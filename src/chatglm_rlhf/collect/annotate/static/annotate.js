// Keyboard shortcuts for the annotator page. Everything also works without JavaScript.
(function () {
  "use strict";
  var form = document.getElementById("annotate-form");
  if (!form) return;
  var fields = Array.prototype.slice.call(form.querySelectorAll("[data-field]"));
  var active = 0, sent = false;

  function radios(i) { return fields[i].querySelectorAll("input[type=radio]"); }
  function firstOpen() {
    for (var i = 0; i < fields.length; i++) { if (!fields[i].querySelector("input:checked")) return i; }
    return fields.length - 1;
  }
  function activate(i) {
    active = Math.max(0, Math.min(fields.length - 1, i));
    fields.forEach(function (f, j) { f.classList.toggle("active", j === active); });
    fields[active].scrollIntoView({ block: "nearest" });
  }
  function choose(value) {
    var inputs = radios(active);
    for (var i = 0; i < inputs.length; i++) {
      if (inputs[i].value === String(value)) { inputs[i].checked = true; }
    }
    if (active < fields.length - 1) activate(active + 1);
  }
  function toggle(id) { var box = document.getElementById(id); box.checked = !box.checked; }
  function submitWith(action) {
    var button = document.getElementById(action === "skip" ? "skip" : "submit");
    if (action === "submit" && !form.checkValidity()) { activate(firstOpen()); form.reportValidity(); return; }
    form.requestSubmit(button);
  }

  fields.forEach(function (f, i) { f.addEventListener("click", function () { activate(i); }); });
  // A second submit (double click, key repeat) is dropped here; the server also ignores a replay.
  form.addEventListener("submit", function (e) { if (sent) { e.preventDefault(); } sent = true; });
  document.getElementById("help-toggle").addEventListener("click", function () {
    var help = document.getElementById("keys-help"); help.hidden = !help.hidden;
  });

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var typing = /^(TEXTAREA|INPUT|SELECT)$/.test(e.target.tagName) && e.target.type !== "radio" && e.target.type !== "checkbox";
    if (typing) { if (e.key === "Escape") e.target.blur(); return; }
    var k = e.key;
    if (k >= "1" && k <= "5") { choose(k); }
    else if (k === "ArrowDown" || k === "j") { activate(active + 1); }
    else if (k === "ArrowUp" || k === "k") { activate(active - 1); }
    else if (k === "Enter") { submitWith("submit"); }
    else if (k === "s") { submitWith("skip"); }
    else if (k === "u") { toggle("flag-unsafe"); }
    else if (k === "b") { toggle("flag-broken"); }
    else if (k === "r") { document.getElementById("rationale").focus(); }
    else if (k === "g") { window.location.href = document.getElementById("guidelines-link").href; }
    else if (k === "?") { document.getElementById("help-toggle").click(); }
    else { return; }
    e.preventDefault();
  });
  activate(firstOpen());
})();
