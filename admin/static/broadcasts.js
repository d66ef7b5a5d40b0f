// The broadcast composer: the fields make a broadcast file (shown, and editable, as JSON),
// the segment's live count comes from POST /admin/api/broadcasts/count as fields change, and
// "create" posts the file to /admin/api/broadcasts, then opens the new broadcast's page.
(function () {
  "use strict";

  function list(value) {
    return value.split(/[,，、]/).map(function (s) { return s.trim(); }).filter(Boolean);
  }

  function fromFields(form) {
    var f = form.elements, all = [];
    if (f.channel.value) all.push({ channel: f.channel.value });
    if (f.civil_servant.value) all.push({ civil_servant: f.civil_servant.value === "true" });
    if (list(f.agencies.value).length) all.push({ agencies: list(f.agencies.value) });
    if (f.language.value) all.push({ language: f.language.value });
    if (list(f.interests.value).length) all.push({ interests: list(f.interests.value) });
    if (f.inactive_days.value) all.push({ inactive_days: Number(f.inactive_days.value) });
    if (f.campaign_eligible.value.trim()) all.push({ campaign_eligible: f.campaign_eligible.value.trim() });
    if (f.podcast_subscribers.value.trim()) all.push({ podcast_subscribers: f.podcast_subscribers.value.trim() });
    if (f.verified_phone.value) all.push({ verified_phone: f.verified_phone.value === "true" });
    var message = { text: f.text.value };
    if (f.text_en.value.trim()) message.text_en = f.text_en.value;
    if (f.image.value.trim()) message.image = f.image.value.trim();
    if (list(f.courses.value).length) message.courses = list(f.courses.value);
    if (f.button_url.value.trim()) {
      var button = { label: f.button_label.value.trim(), url: f.button_url.value.trim() };
      if (f.button_label_en.value.trim()) button.label_en = f.button_label_en.value.trim();
      message.buttons = [button];
    }
    // A datetime-local value has no offset: the API reads it as Taipei time.
    var sendAt = f.send_at.value ? f.send_at.value.replace("T", " ") : "now";
    return { name: f.name.value, segment: { all: all }, message: message, send_at: sendAt };
  }

  function start() {
    var form = document.getElementById("composer");
    if (!form) return;
    var file = form.elements.file, count = document.getElementById("segment-count");
    var status = form.querySelector(".status"), edited = false, timer = null, asked = 0;
    var csrf = document.body.dataset.csrf || "";

    function spec() {
      if (!edited) return fromFields(form);
      try { return JSON.parse(file.value); } catch (e) { return null; }
    }

    function say(text, ok) {
      status.textContent = text;
      status.className = "status " + (ok ? "ok" : "error");
    }

    function problem(data) {
      var d = data && data.detail;
      if (!d) return "HTTP error";
      if (typeof d === "string") return d;
      if (d.message) return d.message;
      if (d.field) return d.field + ": " + d.problem;
      if (Array.isArray(d)) return d.map(function (x) { return x.msg; }).join("; ");
      return JSON.stringify(d);
    }

    function recount() {
      var s = spec();
      if (!s) { count.textContent = "—"; return; }
      var mine = ++asked;
      fetch("/admin/api/broadcasts/count", {
        method: "POST", credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": csrf },
        body: JSON.stringify({ segment: s.segment || {} }),
      }).then(function (r) {
        return r.json().then(function (data) { return { ok: r.ok, data: data }; });
      }).then(function (res) {
        if (mine !== asked) return; // a later count is on its way
        count.textContent = res.ok ? String(res.data.count) : problem(res.data);
        count.dataset.state = res.ok ? "counted" : "refused";
      }).catch(function () { count.textContent = "—"; });
    }

    // An uploaded image is kept by the API, which answers its URL for the image field.
    function upload(input) {
      var picked = input.files[0], note = document.getElementById("image-status");
      if (!picked) return;
      fetch("/admin/api/broadcasts/images", {
        method: "POST", credentials: "same-origin",
        headers: { "content-type": picked.type || "application/octet-stream", "x-csrf-token": csrf },
        body: picked,
      }).then(function (r) {
        return r.json().then(function (data) { return { ok: r.ok, data: data }; });
      }).then(function (res) {
        if (!res.ok) { note.textContent = problem(res.data); note.className = "note error"; return; }
        form.elements.image.value = res.data.url;
        note.textContent = res.data.url;
        note.className = "note ok";
        if (!edited) file.value = JSON.stringify(fromFields(form), null, 2);
      }).catch(function () { note.textContent = "network error"; });
    }

    function changed(ev) {
      if (ev.target === form.elements.image_file) {
        if (ev.type === "change") upload(ev.target);
        return;
      }
      if (ev.target === file) edited = true;
      else if (!edited) file.value = JSON.stringify(fromFields(form), null, 2);
      clearTimeout(timer);
      timer = setTimeout(recount, 300);
    }

    form.addEventListener("input", changed);
    form.addEventListener("change", changed);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var s = spec();
      if (!s) { say("JSON?", false); return; }
      fetch("/admin/api/broadcasts", {
        method: "POST", credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": csrf },
        body: JSON.stringify(s),
      }).then(function (r) {
        return r.json().then(function (data) { return { ok: r.ok, data: data }; });
      }).then(function (res) {
        if (!res.ok) { say(problem(res.data), false); return; }
        say(form.dataset.msgCreated.replace("{id}", res.data.id), true);
        location.assign("/admin/broadcasts/" + res.data.id);
      }).catch(function () { say("network error", false); });
    });
    file.value = JSON.stringify(fromFields(form), null, 2);
    recount();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
