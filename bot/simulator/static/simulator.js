// edoor simulator page. Talks to /simulator/api/*; every message text reaches the page
// through textContent (never innerHTML), and links only through safeUrl().
"use strict";

(() => {
  const POLL_MS = 2000;
  const STORE_KEY = "edoor.simulator.v1";
  const $ = (id) => document.getElementById(id);

  // -- small DOM helpers ------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  // Only http(s) links and media; a javascript: URL in a reply must not become clickable.
  function safeUrl(raw) {
    try {
      const url = new URL(String(raw), window.location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch {
      return null;
    }
  }

  function clock(iso) {
    const when = iso ? new Date(iso) : new Date();
    return when.toLocaleTimeString("zh-TW", {
      timeZone: "Asia/Taipei", hour: "2-digit", minute: "2-digit", hour12: false,
    });
  }

  function duration(ms) {
    const s = Math.max(0, Math.round((Number(ms) || 0) / 1000));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  // -- saved preferences --------------------------------------------------------------------
  function load() {
    try {
      return JSON.parse(window.localStorage.getItem(STORE_KEY) || "{}") || {};
    } catch {
      return {};
    }
  }
  const saved = load();
  function save() {
    try {
      window.localStorage.setItem(STORE_KEY, JSON.stringify(saved));
    } catch {
      /* private mode: preferences simply do not persist */
    }
  }

  function freshKey() {
    const bytes = new Uint8Array(6);
    window.crypto.getRandomValues(bytes);
    return "new-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // -- HTTP -------------------------------------------------------------------------------
  const status = $("status");
  function setStatus(text, bad) {
    status.textContent = text;
    status.classList.toggle("bad", Boolean(bad));
  }

  async function api(path, body) {
    const init = body === undefined
      ? { headers: { Accept: "application/json" } }
      : {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      };
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      setStatus("連線中斷，重試中… Offline, retrying", true);
      throw err;
    }
    if (!response.ok) {
      setStatus(`錯誤 Error ${response.status}`, true);
      throw new Error(`HTTP ${response.status}`);
    }
    setStatus("已連線 Connected", false);
    return response.json();
  }

  // -- conversations, one per persona -----------------------------------------------------
  const logs = $("logs");
  const quick = $("quick");
  const sessions = new Map(); // persona id -> {persona, user, after, log, quick, queue, started}
  let active = null;

  function sessionFor(persona) {
    let s = sessions.get(persona.id);
    if (s) return s;
    let user = persona.user;
    if (!user) {
      user = saved.newUser || freshKey();
      saved.newUser = user;
      save();
    }
    const log = el("ol", {
      class: "log", role: "log", "aria-live": "polite",
      "aria-label": `與小幫手的對話（${persona.label}） Conversation`, "data-user": user,
    });
    logs.append(log);
    s = { persona, user, after: 0, log, quick: [], queue: Promise.resolve(), started: false };
    sessions.set(persona.id, s);
    return s;
  }

  function scrollDown() {
    logs.scrollTop = logs.scrollHeight;
  }

  function append(s, item) {
    s.log.append(item);
    if (s === active) scrollDown();
  }

  function userBubble(s, text) {
    append(s, el("li", { class: "msg me" },
      el("div", { class: "bubble" }, el("p", { class: "text", text })),
      el("time", { class: "time", text: clock() })));
  }

  function typing(s) {
    const dots = el("li", { class: "msg bot typing", "aria-hidden": "true" },
      el("div", { class: "bubble" }, el("span"), el("span"), el("span")));
    append(s, dots);
    return dots;
  }

  // -- rendering one message: the LINE and Telegram renderers' own output ----------------
  // The server sends, beside each neutral Reply, what bot/line/render.py and
  // bot/telegram/render.py make of it; the page draws those, so a button a platform would
  // lose (LINE: 4 a card, 20-character labels, no share-phone button) is lost here too.
  function linkOrButton(s, label, { action, url, cls, echo }) {
    if (url !== undefined) {
      const href = safeUrl(url);
      if (!href) return el("span", { class: `${cls} disabled`, text: label });
      return el("a", {
        class: cls, href, target: "_blank", rel: "noopener noreferrer",
      }, label, el("span", { class: "ext", "aria-hidden": "true", text: " ↗" }));
    }
    return el("button", {
      type: "button", class: cls, "data-action": action,
      onclick: () => tap(s, { action, label: echo || label }),
    }, label);
  }

  // LINE actions: postback (data) or uri.
  function lineAction(s, action, cls) {
    const label = String(action.label || "");
    if (action.type === "uri") return linkOrButton(s, label, { url: action.uri, cls });
    return linkOrButton(s, label, {
      action: action.data, cls, echo: action.displayText || label,
    });
  }

  // A Flex component: boxes hold texts and buttons; the first bold text is the title.
  function flexNodes(s, component, out) {
    if (!component) return out;
    if (component.type === "box") {
      for (const child of component.contents || []) flexNodes(s, child, out);
    } else if (component.type === "text") {
      const bold = component.weight === "bold";
      out.push(el(bold ? "h3" : "p", {
        class: bold ? "card-title" : (component.size === "xs" ? "card-subtitle" : "card-text"),
        text: component.text || "",
      }));
    } else if (component.type === "button") {
      out.push(lineAction(s, component.action || {}, "action"));
    }
    return out;
  }

  function flexBubble(s, bubble, asCard) {
    const body = flexNodes(s, bubble.body, []);
    const footer = flexNodes(s, bubble.footer, []);
    if (!asCard) {
      const texts = body.map((n) => (n.tagName === "BUTTON" || n.tagName === "A"
        ? n : el("p", { class: "text", text: n.textContent })));
      return el("div", { class: "bubble" }, ...texts,
        footer.length ? el("div", { class: "actions", role: "group" }, ...footer) : null);
    }
    const buttonsOnly = body.every((n) => n.tagName === "BUTTON" || n.tagName === "A");
    return el("article", { class: buttonsOnly && body.length ? "card more" : "card", role: "listitem" },
      buttonsOnly
        ? el("div", { class: "card-actions" }, ...body)
        : el("div", { class: "card-body" }, ...body),
      footer.length ? el("div", { class: "card-actions", role: "group" }, ...footer) : null);
  }

  function lineMessage(s, message) {
    if (message.type === "text") {
      return el("div", { class: "bubble" }, el("p", { class: "text", text: message.text || "" }));
    }
    if (message.type === "flex") {
      const contents = message.contents || {};
      if (contents.type === "carousel") {
        return el("div", {
          class: "carousel", role: "list", tabindex: "0", "aria-label": message.altText || "",
        }, ...(contents.contents || []).map((b) => flexBubble(s, b, true)));
      }
      return flexBubble(s, contents, false);
    }
    if (message.type === "audio") {
      const src = safeUrl(message.originalContentUrl);
      return el("div", { class: "bubble audio" },
        el("p", { class: "audio-title" }, el("span", { "aria-hidden": "true", text: "🎧 " }),
          el("span", { class: "muted", text: duration(message.duration) })),
        src ? el("audio", { controls: true, preload: "none", src }) : null);
    }
    if (message.type === "image") {
      const src = safeUrl(message.previewImageUrl || message.originalContentUrl);
      return el("div", { class: "bubble image" },
        src ? el("img", { src, alt: "", loading: "lazy" }) : null);
    }
    return el("div", { class: "bubble" },
      el("p", { class: "muted", text: `（不支援的訊息 unsupported: ${message.type}）` }));
  }

  function lineView(s, messages) {
    return el("div", { class: "cards-line-view" }, ...messages.map((m) => lineMessage(s, m)));
  }

  // Telegram: each Bot API call; inline keyboards as rows, a reply keyboard under the text.
  function inlineKeyboard(s, markup) {
    const rows = (markup && markup.inline_keyboard) || [];
    if (!rows.length) return null;
    return el("div", { class: "keyboard", role: "group" }, ...rows.map((row) =>
      el("div", { class: "key-row" }, ...row.map((key) => (key.url !== undefined
        ? linkOrButton(s, key.text, { url: key.url, cls: "key" })
        : linkOrButton(s, key.text, { action: key.callback_data, cls: "key" }))))));
  }

  function replyKeyboard(s, markup) {
    const rows = (markup && markup.keyboard) || [];
    if (!rows.length) return null;
    const nodes = [];
    for (const key of rows.flat()) {
      if (key.request_contact) {
        const input = el("input", {
          type: "tel", inputmode: "tel", maxlength: "32", required: true,
          placeholder: "0912 345 678", "aria-label": "手機號碼 Phone number",
        });
        const form = el("form", { class: "share-phone", autocomplete: "off" }, input,
          el("button", { type: "submit", class: "action primary" },
            el("span", { "aria-hidden": "true", text: "📱 " }), key.text || ""));
        form.addEventListener("submit", (event) => {
          event.preventDefault();
          const phone = input.value.trim();
          if (!phone) return;
          input.value = "";
          sharePhone(s, phone);
        });
        nodes.push(form);
      } else {
        // A reply-keyboard button sends its label as text.
        nodes.push(el("button", {
          type: "button", class: "key", onclick: () => send(s, { kind: "text", text: key.text }, key.text),
        }, key.text || ""));
      }
    }
    return el("div", { class: "keyboard reply-keyboard", role: "group" }, ...nodes);
  }

  function telegramCall(s, call) {
    const p = call.params || {};
    const markup = p.reply_markup;
    const keys = [inlineKeyboard(s, markup), replyKeyboard(s, markup)];
    if (call.method === "sendAudio") {
      const src = typeof p.audio === "string" ? safeUrl(p.audio) : null;
      return el("div", { class: "bubble audio" },
        el("p", { class: "audio-title" }, el("span", { "aria-hidden": "true", text: "🎧 " }),
          p.title || "", el("span", { class: "muted", text: ` · ${duration((p.duration || 0) * 1000)}` })),
        src ? el("audio", { controls: true, preload: "none", src }) : null, ...keys);
    }
    if (call.method === "sendPhoto") {
      const src = typeof p.photo === "string" ? safeUrl(p.photo) : null;
      return el("div", { class: "bubble image" },
        src ? el("img", { src, alt: "", loading: "lazy" }) : null,
        p.caption ? el("p", { class: "text", text: p.caption }) : null, ...keys);
    }
    return el("div", { class: "bubble tg-list" },
      el("p", { class: "text", text: p.text || "" }), ...keys);
  }

  function telegramView(s, calls) {
    return el("div", { class: "cards-telegram-view" }, ...calls.map((c) => telegramCall(s, c)));
  }

  function renderReply(s, message) {
    const reply = message.reply || {};
    const line = message.line || [];
    append(s, el("li", { class: `msg bot kind-${reply.kind}`, "data-id": message.id },
      el("span", { class: "avatar", "aria-hidden": "true", text: "e" }),
      el("div", { class: "content" }, lineView(s, line), telegramView(s, message.telegram || []),
        el("time", { class: "time", datetime: message.at || "", text: clock(message.at) }))));
    // LINE shows quick replies only under the latest message, and so do we (Telegram has
    // them as inline rows on the message itself).
    const last = line[line.length - 1];
    s.quick = (last && last.quickReply && last.quickReply.items) || [];
    if (s === active) showQuick(s);
  }

  function receive(s, data) {
    for (const message of data.messages || []) {
      if (message.id <= s.after) continue; // a poll and a send may both return it
      s.after = message.id;
      renderReply(s, message);
    }
  }

  function showQuick(s) {
    quick.replaceChildren(...s.quick.map((item) => lineAction(s, item.action || {}, "chip")));
    quick.hidden = s.quick.length === 0;
  }

  // -- what the person does -------------------------------------------------------------------
  function send(s, body, echo) {
    if (echo) userBubble(s, echo);
    s.quick = [];
    if (s === active) showQuick(s);
    // One at a time per person, so the bot sees inputs in the order they were made.
    s.queue = s.queue.then(async () => {
      const dots = typing(s);
      try {
        const payload = { user: s.user, persona: s.persona.id, after: s.after, ...body };
        receive(s, await api("/simulator/api/send", payload));
      } catch {
        append(s, el("li", { class: "msg system", role: "alert" },
          el("p", { text: "送出失敗，請再試一次。 Could not send; please try again." })));
      } finally {
        dots.remove();
      }
    });
    return s.queue;
  }

  function tap(s, button) {
    return send(s, { kind: "action", action: button.action }, button.label);
  }

  function sharePhone(s, phone) {
    setInboxPhone(phone);
    return send(s, { kind: "contact", phone }, `📱 ${phone}`);
  }

  async function sync(s) {
    if (s.syncing) return;
    s.syncing = true;
    try {
      const query = new URLSearchParams({ user: s.user, after: String(s.after) });
      receive(s, await api(`/simulator/api/messages?${query}`));
    } catch {
      /* the status line says so; the next poll retries */
    } finally {
      s.syncing = false;
    }
  }

  async function open(persona) {
    const s = sessionFor(persona);
    active = s;
    saved.persona = persona.id;
    save();
    for (const other of sessions.values()) other.log.hidden = other !== s;
    $("new-person").hidden = persona.user !== null;
    showQuick(s);
    if (!s.started) {
      s.started = true;
      await sync(s);
      // A person we have never met "adds the bot as a friend", as on LINE.
      if (s.after === 0 && !s.log.childElementCount) await send(s, { kind: "follow" });
    }
    scrollDown();
  }

  // -- persona picker and card style ----------------------------------------------------------
  function buildPersonas(personas) {
    const box = $("personas");
    const choice = personas.find((p) => p.id === saved.persona) || personas[1] || personas[0];
    for (const persona of personas) {
      const radio = el("input", {
        type: "radio", name: "persona", value: persona.id,
        "aria-describedby": `persona-${persona.id}-desc`,
      });
      radio.checked = persona === choice;
      radio.addEventListener("change", () => radio.checked && open(persona));
      box.append(el("label", { title: persona.description }, radio,
        el("span", { text: persona.label }),
        el("span", { class: "visually-hidden", id: `persona-${persona.id}-desc`,
          text: persona.description })));
    }
    $("new-person").addEventListener("click", () => {
      const persona = personas.find((p) => p.user === null);
      const old = persona && sessions.get(persona.id);
      if (!old) return;
      old.log.remove();
      sessions.delete(persona.id);
      saved.newUser = freshKey();
      save();
      open(persona);
    });
    return choice;
  }

  function setCardStyle(style) {
    document.body.classList.toggle("cards-line", style !== "telegram");
    document.body.classList.toggle("cards-telegram", style === "telegram");
    saved.cardStyle = style;
    save();
  }

  for (const radio of document.querySelectorAll('input[name="card-style"]')) {
    radio.checked = radio.value === (saved.cardStyle || "line");
    radio.addEventListener("change", () => radio.checked && setCardStyle(radio.value));
  }
  setCardStyle(saved.cardStyle || "line");

  // -- composer ---------------------------------------------------------------------------------
  const input = $("composer-input");
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || !active) return;
    input.value = "";
    // A number typed in answer to "share your phone" is the one to watch in the inbox.
    const last = active.log.lastElementChild;
    if (last && last.classList.contains("kind-ask_phone") && /^[+\d][\d\s()-]{6,}$/.test(text)) {
      setInboxPhone(text);
    }
    send(active, { kind: "text", text }, text);
    input.focus();
  });

  // -- phone inbox (dev SMS provider) ----------------------------------------------------------
  const inbox = { phone: "", user: "", after: 0, unread: 0, syncing: false };
  const inboxList = $("inbox");
  const inboxStatus = $("inbox-status");
  const badge = $("inbox-badge");
  const toggle = $("inbox-toggle");
  const phonePanel = $("phone");

  function setInboxPhone(phone) {
    if (phone === inbox.phone) return;
    $("inbox-phone").value = phone;
    inbox.phone = phone;
    inbox.after = 0;
    saved.inboxPhone = phone;
    save();
    inboxList.replaceChildren();
    syncInbox();
  }

  function panelOpen() {
    return toggle.getAttribute("aria-expanded") === "true"
      || window.getComputedStyle(toggle).display === "none";
  }

  async function syncInbox() {
    if (!inbox.phone || inbox.syncing || !active) return;
    // The inbox shows only the codes this simulated person asked for: another person
    // starts from an empty inbox.
    if (inbox.user !== active.user) {
      inbox.user = active.user;
      inbox.after = 0;
      inboxList.replaceChildren();
    }
    inbox.syncing = true;
    const phone = inbox.phone;
    const user = inbox.user;
    try {
      const query = new URLSearchParams({ user, phone, after: String(inbox.after) });
      const data = await api(`/simulator/api/sms?${query}`);
      if (phone !== inbox.phone || user !== inbox.user) return; // changed while we asked
      if (!data.valid) {
        inboxStatus.textContent = "這不是有效的手機號碼。 Not a phone number.";
        return;
      }
      inboxStatus.textContent = `${data.phone} 的簡訊 Messages to ${data.phone}`;
      for (const message of data.messages) {
        if (message.id <= inbox.after) continue;
        inbox.after = message.id;
        inboxList.prepend(el("li", { class: "sms" },
          el("p", { class: "text", text: (message.reply && message.reply.text) || "" }),
          el("time", { class: "time", datetime: message.at, text: clock(message.at) })));
        if (!panelOpen()) inbox.unread += 1;
      }
      badge.textContent = String(inbox.unread);
      badge.hidden = inbox.unread === 0;
    } catch {
      /* the status line says so */
    } finally {
      inbox.syncing = false;
    }
  }

  $("inbox-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setInboxPhone($("inbox-phone").value.trim());
  });
  toggle.addEventListener("click", () => {
    const opened = !panelOpen();
    toggle.setAttribute("aria-expanded", String(opened));
    phonePanel.classList.toggle("open", opened);
    if (opened) {
      inbox.unread = 0;
      badge.hidden = true;
      $("inbox-phone").focus();
    }
  });

  // -- start ------------------------------------------------------------------------------------
  async function start() {
    let personas;
    try {
      personas = (await api("/simulator/api/personas")).personas;
    } catch {
      setTimeout(start, POLL_MS);
      return;
    }
    await open(buildPersonas(personas));
    if (saved.inboxPhone) setInboxPhone(saved.inboxPhone);
    window.setInterval(() => {
      if (document.hidden) return; // a background tab need not poll
      if (active) sync(active);
      syncInbox();
    }, POLL_MS);
  }
  start();
})();
