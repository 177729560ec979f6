// The chat panel of a call, shared by the kiosk and the expert desk. Lines come as
// events and, after a reload or a reconnection, from the call's history: each is
// shown once, in the order it was sent.
import { textElement } from "./i18n.js";

export function chatPanel({ list, input, button, mySide, send }) {
  const shown = new Map(); // message id -> sent_at

  function add(message) {
    if (shown.has(message.id)) return;
    shown.set(message.id, message.sent_at);
    const item = document.createElement("li");
    item.dataset.sentAt = String(message.sent_at);
    item.className = message.sender === mySide ? "chat-mine" : "chat-theirs";
    const who = textElement("span", message.sender === mySide ? "chat.you" : `chat.${message.sender}`, null, "chat-who");
    const text = document.createElement("span");
    text.className = "chat-text";
    text.translate = false;
    text.textContent = message.text;
    item.append(who, text);
    const later = [...list.children].find((li) => Number(li.dataset.sentAt) > message.sent_at);
    list.insertBefore(item, later ?? null);
    list.scrollTop = list.scrollHeight;
  }

  async function submit() {
    const text = input.value.trim();
    if (!text) return;
    button.disabled = true;
    try {
      await send(text);
      input.value = "";
    } catch {
      input.classList.add("invalid");
      setTimeout(() => input.classList.remove("invalid"), 1500);
    } finally {
      button.disabled = false;
      input.focus();
    }
  }

  button.addEventListener("click", submit);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      submit();
    }
  });
  return {
    add,
    clear() {
      shown.clear();
      list.replaceChildren();
      input.value = "";
    },
  };
}
