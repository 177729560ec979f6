// The chat panel of a call, shared by the kiosk and the expert desk. Lines come as
// events and, after a reload or a reconnection, from the call's history: each is
// shown once, in the order it was sent. With more than one member of staff in the
// call, a line says whose it is (role and name); `myPosition()` is this page's
// position in the call (null: not known, a call of two), `myName` its account's name.
import { textElement } from "./i18n.js";

export function chatPanel({ list, input, button, mySide, send, myPosition = () => null, myName = null }) {
  const shown = new Map(); // message id -> sent_at

  function mine(message) {
    const you = myPosition();
    if (Number.isInteger(message.sender_position) && Number.isInteger(you)) return message.sender_position === you;
    if (message.sender !== mySide) return false;
    // Two experts in one call: the other's lines carry another name.
    return !message.sender_name || !myName || message.sender_name === myName;
  }

  function who(message) {
    const holder = document.createElement("span");
    holder.className = "chat-who";
    if (mine(message)) {
      holder.append(textElement("span", "chat.you"));
      return holder;
    }
    holder.append(textElement("span", `chat.${message.sender_role ?? message.sender}`));
    if (message.sender_name && (message.sender_role ?? message.sender) !== "kiosk") {
      const name = document.createElement("span");
      name.className = "chat-name";
      name.translate = false;
      name.textContent = message.sender_name;
      holder.append(" ", name);
    }
    return holder;
  }

  function add(message) {
    if (shown.has(message.id)) return;
    shown.set(message.id, message.sent_at);
    const item = document.createElement("li");
    item.dataset.sentAt = String(message.sent_at);
    item.className = mine(message) ? "chat-mine" : "chat-theirs";
    const text = document.createElement("span");
    text.className = "chat-text";
    text.translate = false;
    text.textContent = message.text;
    item.append(who(message), text);
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
