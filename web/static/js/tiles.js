// The call's pictures, shared by the kiosk and the staff desk: one tile per other
// participant present (slots.js maps the connection's slots to people), each saying
// who it is (name, department, role); the shared screen; one's own picture. One tap
// makes a tile large (an interpreter signing must be large enough to read), another
// makes it small again. With a screen shared, the screen is large and the faces
// stand beside it.
//
// Only tiles of people present carry data-testid="remote-video" (with
// data-participant = role, data-department = department code for staff), and the
// screen's <video> data-testid="shared-screen" only while one is shared: the test
// ids count what is there (but for the first tile's, kept while nobody is there).
import { OPEN_INVITATION } from "./callactions.js";
import { textElement } from "./i18n.js";
import { SLOTS, sharerOf, slotsOf } from "./slots.js";

const SCREEN = "screen";

function departmentText(person, departmentName) {
  if (!person.department) return null;
  if (person.department_name_zh) return { zh: person.department_name_zh, en: person.department_name_en ?? person.department_name_zh };
  return departmentName(person.department);
}

// Name, department and role of a participant, as spans of `holder`
// (`departmentName`: a department's code -> its name, where the view has none).
export function describe(holder, person, { connected = true, departmentName = (code) => code } = {}) {
  holder.replaceChildren();
  if (person.name && person.role !== "kiosk") {
    const name = document.createElement("span");
    name.className = "who-name";
    name.translate = false;
    name.textContent = person.name;
    holder.append(name);
  }
  const department = departmentText(person, departmentName);
  if (department) holder.append(textElement("span", "call.department", { name: department }, "who-department"));
  holder.append(textElement("span", `call.role.${person.role}`, null, "who-role"));
  if (!connected) holder.append(textElement("span", "call.reconnecting", null, "who-state"));
}

export class TileBoard {
  // `root`: the call's .videos; `list`: the participant list (<ul>), or null;
  // `departmentName`: a department's code -> its name ({zh, en}) for invitations.
  constructor({ root, mySide, list = null, departmentName = (code) => code, onChange = () => {} }) {
    this.root = root;
    this.mySide = mySide;
    this.list = list;
    this.departmentName = departmentName;
    this.onChange = onChange;
    this.tiles = [...root.querySelectorAll(".tile[data-slot]")].sort((a, b) => a.dataset.slot - b.dataset.slot);
    this.videos = this.tiles.map((tile) => tile.querySelector("video"));
    this.screenTile = root.querySelector(".tile[data-screen]");
    this.screenVideo = this.screenTile.querySelector("video");
    this.people = new Array(SLOTS).fill(null);
    this.sharer = null;
    this.invitations = [];
    this.focused = null; // a slot's number as a string, SCREEN, or null
    this.reconnecting = new Set(); // positions said to be reconnecting (peer_status)
    this.tiles.forEach((tile, slot) => tile.addEventListener("click", () => this.toggleFocus(String(slot))));
    this.screenTile.addEventListener("click", () => this.toggleFocus(SCREEN));
    this.render();
  }

  // The consultation view as it is now: who is where, who shares.
  update(view) {
    this.people = slotsOf(view, this.mySide);
    this.sharer = sharerOf(view);
    this.invitations = (view.invitations ?? []).filter((i) => OPEN_INVITATION.has(i.state));
    for (const person of view.participants ?? []) {
      if (person.connected) this.reconnecting.delete(person.position);
    }
    this.render();
  }

  // peer_status: a participant's connection dropped or came back.
  peerStatus(position, reconnecting) {
    if (!Number.isInteger(position)) return;
    if (reconnecting) this.reconnecting.add(position);
    else this.reconnecting.delete(position);
    this.render();
  }

  connected(person) {
    return person.connected !== false && !this.reconnecting.has(person.position);
  }

  toggleFocus(key) {
    this.focused = this.focused === key ? null : key;
    this.render();
  }

  get present() {
    return this.people.filter(Boolean).length;
  }

  render() {
    this.people.forEach((person, slot) => {
      const tile = this.tiles[slot];
      const video = this.videos[slot];
      tile.hidden = !person;
      if (person) {
        video.dataset.testid = "remote-video";
        video.dataset.participant = person.role;
        if (person.role !== "kiosk" && person.department) video.dataset.department = person.department;
        else delete video.dataset.department;
        describe(tile.querySelector(".tile-label"), person, { connected: this.connected(person), departmentName: this.departmentName });
      } else {
        // With nobody in any slot (before the call's first view, or alone during a
        // transfer), the first tile's <video> stays the page's one "remote-video",
        // hidden, as the one of a call of two always was there.
        if (slot === 0 && this.present === 0) video.dataset.testid = "remote-video";
        else delete video.dataset.testid;
        delete video.dataset.participant;
        delete video.dataset.department;
        tile.querySelector(".tile-label").replaceChildren();
      }
    });
    const sharing = this.sharer !== null;
    this.screenTile.hidden = !sharing;
    if (sharing) {
      this.screenVideo.dataset.testid = "shared-screen";
      const label = this.screenTile.querySelector(".tile-label");
      describe(label, this.sharer, { departmentName: this.departmentName });
      label.prepend(textElement("span", "call.screen_of", null, "who-screen"));
    } else {
      delete this.screenVideo.dataset.testid;
      if (this.focused === SCREEN) this.focused = null;
    }
    if (this.focused !== null && this.focused !== SCREEN && !this.people[Number(this.focused)]) this.focused = null;
    // Large: the tile tapped, else the shared screen; with one picture only, it is large anyway.
    const shown = this.present + (sharing ? 1 : 0);
    const featured = shown > 1 ? (this.focused ?? (sharing ? SCREEN : null)) : null;
    this.root.dataset.layout = featured !== null ? "featured" : shown > 1 ? "grid" : "single";
    // Beside the large one: the other tiles and one's own picture.
    this.root.dataset.beside = String(featured !== null ? shown : 0);
    this.tiles.forEach((tile, slot) => this.mark(tile, featured === String(slot)));
    this.mark(this.screenTile, featured === SCREEN);
    this.renderList();
    this.onChange();
  }

  mark(tile, featured) {
    tile.classList.toggle("featured", featured);
    tile.querySelector(".tile-label").setAttribute("aria-pressed", featured ? "true" : "false");
  }

  // Who else is in the call, and who is being asked to join.
  renderList() {
    if (!this.list) return;
    this.list.replaceChildren();
    for (const person of this.people) {
      if (!person) continue;
      const item = document.createElement("li");
      item.dataset.participant = person.role;
      if (person.position !== undefined) item.dataset.position = String(person.position);
      describe(item, person, { connected: this.connected(person), departmentName: this.departmentName });
      this.list.append(item);
    }
    for (const invitation of this.invitations) {
      const item = textElement("li", "call.inviting", { department: this.departmentName(invitation.department) }, "pending");
      item.dataset.invitation = invitation.invitation_id;
      this.list.append(item);
    }
    // With one other person only, their tile says who they are: no list (a call of
    // two looks as it always did).
    this.list.hidden = this.list.children.length <= 1 && this.invitations.length === 0;
  }

  clear() {
    this.people = new Array(SLOTS).fill(null);
    this.sharer = null;
    this.invitations = [];
    this.focused = null;
    this.reconnecting.clear();
    this.render();
  }
}
