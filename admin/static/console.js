// The console's own script: forms that call the /admin/api endpoints (JSON or a file as the
// body, with an upload progress bar), with the session's CSRF token. htmx does the rest.
(function () {
  "use strict";

  function csrf() {
    return document.body.dataset.csrf || "";
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, key) {
      return encodeURIComponent(values[key] || "");
    });
  }

  function say(form, text, ok) {
    var status = form.querySelector(".status");
    if (status) {
      status.textContent = text;
      status.className = "status " + (ok ? "ok" : "error");
    }
  }

  function showResult(form, data) {
    var pre = form.querySelector(".result");
    if (!pre) return;
    pre.hidden = false;
    pre.textContent = JSON.stringify(data, null, 2);
  }

  function detailText(data) {
    var detail = data && data.detail;
    if (!detail) return "HTTP error";
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map(function (d) { return (d.loc || []).slice(1).join(".") + ": " + d.msg; }).join("; ");
    }
    if (detail.message) return detail.message;
    return JSON.stringify(detail);
  }

  function summary(data) {
    return Object.keys(data)
      .filter(function (k) { return typeof data[k] === "number" || typeof data[k] === "string"; })
      .map(function (k) { return k + " " + data[k]; })
      .join(", ");
  }

  async function apiForm(form) {
    var body = {};
    var path = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.type === "submit" || el.tagName === "BUTTON") return;
      var value = el.type === "checkbox" ? el.checked : el.value;
      if (el.hasAttribute("data-path")) { path[el.name] = value; return; }
      if (el.hasAttribute("data-null-if-empty") && value === "") value = null;
      if (el.hasAttribute("data-bool")) value = value === true || value === "true";
      if (el.type === "number" && value !== "" && value !== null) value = Number(value);
      body[el.name] = value;
    });
    var response = await fetch(fill(form.dataset.api, path), {
      method: form.dataset.method || "POST",
      headers: { "content-type": "application/json", "x-csrf-token": csrf() },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    var data = await response.json().catch(function () { return {}; });
    if (response.ok) {
      say(form, form.dataset.msgDone || "OK", true);
      showResult(form, data);
      if (form.hasAttribute("data-reload")) setTimeout(function () { location.reload(); }, 800);
    } else {
      say(form, detailText(data), false);
    }
  }

  // A text typed into the page (a campaign file) sent as the body, as a file upload would be;
  // a refused one lists its problems. data-go: the page to open after, filled from the answer.
  async function rawForm(form) {
    var refused = form.querySelector(".refused");
    if (refused) refused.innerHTML = "";
    form.dataset.state = "sending";
    var response = await fetch(form.dataset.raw, {
      method: form.dataset.method || "POST",
      headers: { "content-type": form.dataset.type || "text/plain", "x-csrf-token": csrf() },
      body: form.elements.body.value,
      credentials: "same-origin",
    });
    var data = await response.json().catch(function () { return {}; });
    if (response.ok) {
      form.dataset.state = "done";
      say(form, form.dataset.msgDone || "OK", true);
      if (form.dataset.go) location.assign(form.dataset.go.replace(/\{(\w+)\}/g, function (_, k) {
        return encodeURIComponent(data[k] || "");
      }));
      else if (form.hasAttribute("data-reload")) setTimeout(function () { location.reload(); }, 800);
      return;
    }
    form.dataset.state = "refused";
    var errors = data.detail && data.detail.errors;
    say(form, errors ? (form.dataset.msgRefused || detailText(data)) : detailText(data), false);
    (errors || []).forEach(function (row) {
      var li = document.createElement("li");
      li.textContent = row;
      refused.appendChild(li);
    });
  }

  var TYPES = { csv: "text/csv", json: "application/json", yaml: "application/yaml",
    yml: "application/yaml", mp3: "audio/mpeg", m4a: "audio/mp4", wav: "audio/wav" };

  function upload(form) {
    var input = form.querySelector("input[type=file]");
    var file = input && input.files[0];
    if (!file) return;
    var path = {};
    var query = new URLSearchParams();
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.type === "file" || el.tagName === "BUTTON") return;
      if (el.hasAttribute("data-path")) path[el.name] = el.value;
      else if (el.hasAttribute("data-query")) query.set(el.name, el.value);
      else if (el.type === "checkbox" && el.checked) query.set(el.name, "true");
    });
    var ext = (file.name.split(".").pop() || "").toLowerCase();
    query.set("filename", file.name);
    if (ext === "csv" || ext === "json") query.set("format", ext);
    var bar = form.querySelector("progress");
    var refused = form.querySelector(".refused");
    refused.innerHTML = "";
    bar.hidden = false;
    bar.value = 0;
    var xhr = new XMLHttpRequest();
    xhr.open("POST", fill(form.dataset.upload, path) + "?" + query.toString());
    xhr.setRequestHeader("x-csrf-token", csrf());
    xhr.setRequestHeader("content-type", TYPES[ext] || "application/octet-stream");
    xhr.upload.onprogress = function (ev) {
      if (!ev.lengthComputable) return;
      var pct = Math.round((ev.loaded * 100) / ev.total);
      bar.value = pct;
      say(form, (form.dataset.msgSending || "{percent}%").replace("{percent}", pct), true);
    };
    xhr.upload.onload = function () {
      bar.value = 100;
      say(form, form.dataset.msgSaving || "…", true);
    };
    xhr.onload = function () {
      var data = {};
      try { data = JSON.parse(xhr.responseText); } catch (e) { data = {}; }
      var rows = [];
      if (xhr.status >= 200 && xhr.status < 300) {
        say(form, (form.dataset.msgDone || "{summary}").replace("{summary}", summary(data)), true);
        rows = data.skipped_rows || [];
        form.dataset.state = "done";
      } else if (data.detail && data.detail.errors) {
        say(form, form.dataset.msgRefused || detailText(data), false);
        rows = data.detail.errors;
        form.dataset.state = "refused";
      } else {
        say(form, detailText(data), false);
        form.dataset.state = "error";
      }
      rows.forEach(function (row) {
        var li = document.createElement("li");
        li.textContent = row;
        refused.appendChild(li);
      });
    };
    xhr.onerror = function () { say(form, "network error", false); form.dataset.state = "error"; };
    form.dataset.state = "sending";
    xhr.send(file);
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.matches("form[data-api]")) { ev.preventDefault(); apiForm(form); }
    else if (form.matches("form[data-upload]")) { ev.preventDefault(); upload(form); }
    else if (form.matches("form[data-raw]")) { ev.preventDefault(); rawForm(form); }
  });
})();
