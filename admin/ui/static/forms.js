// Hides the password field of "Create user" while the type is "service"
// (a service account has no password). Without this file the field stays
// and the API's answer says a service account takes no password.
document.addEventListener("DOMContentLoaded", function () {
  var type = document.getElementById("type");
  var row = document.getElementById("password-row");
  if (!type || !row) { return; }
  var pw = document.getElementById("password");
  var sync = function () {
    var service = type.value === "service";
    row.hidden = service;
    if (service && pw) { pw.value = ""; }
  };
  type.addEventListener("change", sync);
  sync();
});
