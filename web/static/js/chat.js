// The chat panel of a call, shared by the kiosk and the expert desk.
import { textElement } from "./i18n.js";

export function chatPanel({ list, input, button, mySide, send }) {
  function add(message) {
    const item = document.createElement("li");
    item.className = message.sender === mySide ? "chat-mine" : "chat-theirs";
    const who = textElement("span", message.sender === mySide ? "chat.you" : `chat.${message.sender}`, null, "chat-who");
    const text = document.createElement("span");
    text.className = "chat-text";
    text.translate = false;
    text.textContent = message.text;
    item.append(who, text);
    list.append(item);
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
      list.replaceChildren();
      input.value = "";
    },
  };
}
