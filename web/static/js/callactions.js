// What staff do in a call besides talking (issue 21): invite another department or
// an interpreter pool (with a note), hand the citizen to another department (with
// a reason, only where the admin allows), leave the call, share a screen; and the
// invitations of the call said plainly (ringing, declined, nobody answered).
// Interpreters only leave; the rest is the experts'.
import { api } from "./api.js";
import { setText, textElement } from "./i18n.js";
import { byTestId } from "./session.js";

const ACCEPTED_SHOWN_MS = 5000;
const MAX_PARTICIPANTS = 4;
// An invitation still open: ringing someone, waiting for someone of that department
// to come online, or declined by one of them (it goes on to the next, or expires).
export const OPEN_INVITATION = new Set(["ringing", "waiting", "declined"]);

function nameOf(department) {
  return department ? { zh: department.name_zh, en: department.name_en } : null;
}

export class CallActions {
  // `send(event, payload)`: a socket.io request; `callId()`: the call's id;
  // `me`: GET /api/v1/me; `call`: the CallView; `onView(view)`: a view of the call
  // to apply; `onLeft(view)`: this member of staff is out of the call (left, or
  // handed it over).
  constructor({ send, callId, me, call, onView, onLeft }) {
    this.send = send;
    this.callId = callId;
    this.me = me;
    this.call = call;
    this.onView = onView;
    this.onLeft = onLeft;
    this.sharePending = false; // asked the server, no answer yet
    this.expert = me.role === "expert";
    this.departments = new Map(); // code -> department (GET /api/v1/departments)
    this.online = new Map(); // code -> experts online
    this.invitations = new Map(); // invitation id -> Invitation (this call's)
    this.mine = new Set(); // invitations this page made (it may cancel them)
    this.view = null;
    this.sharing = false;
    this.busy = false;
    this.bar = document.getElementById("call-actions");
    this.list = byTestId("invitations");
    this.inviteChooser = document.getElementById("invite-chooser");
    this.transferChooser = document.getElementById("transfer-chooser");
    this.message = document.getElementById("call-actions-message");
    for (const id of ["invite-department", "transfer-department", "share-screen"]) byTestId(id).hidden = !this.expert;
    byTestId("invite-department").addEventListener("click", () => this.openChooser(this.inviteChooser));
    byTestId("transfer-department").addEventListener("click", () => this.openChooser(this.transferChooser));
    for (const close of document.querySelectorAll("[data-testid=chooser-close]")) {
      close.addEventListener("click", () => this.closeChoosers());
    }
    byTestId("leave-call").addEventListener("click", () => this.leave());
    byTestId("share-screen").addEventListener("click", () => this.toggleScreen());
    byTestId("record-request").addEventListener("click", () => this.requestRecording());
    byTestId("transfer-reason").addEventListener("input", () => this.say(null));
    this.loadDepartments();
  }

  departmentName(code) {
    return nameOf(this.departments.get(code)) ?? code;
  }

  async loadDepartments() {
    const [list, status] = await Promise.all([
      api("GET", "/api/v1/departments").catch(() => null),
      api("GET", "/api/v1/departments/status").catch(() => null),
    ]);
    if (list) for (const department of list.departments) this.departments.set(department.code, department);
    if (status) for (const department of status.departments) this.online.set(department.code, department.experts_online);
  }

  say(key, vars) {
    if (key) setText(this.message, key, vars);
    else {
      this.message.textContent = "";
      delete this.message.dataset.i18n;
    }
  }

  // ---- the view of the call ------------------------------------------------

  update(view) {
    this.view = view;
    const open = new Set();
    for (const invitation of view.invitations ?? []) {
      open.add(invitation.invitation_id);
      this.invitations.set(invitation.invitation_id, invitation);
    }
    // One no longer open ended meanwhile; its `invitation` event says how.
    for (const [id, invitation] of this.invitations) {
      if (OPEN_INVITATION.has(invitation.state) && Array.isArray(view.invitations) && !open.has(id)) this.invitations.delete(id);
    }
    // Another expert's screen took over from this one's (or the server ended it):
    // stop sending it. Not while the server has yet to answer this side's start.
    const sharer = Number.isInteger(view.screen) ? view.screen : null;
    if (this.sharing && !this.sharePending && "screen" in view && sharer !== view.you) this.stopScreen({ tell: false });
    this.render();
  }

  // Event `invitation`: one of this call's invitations changed.
  invitationEvent(invitation) {
    if (invitation.consultation_id !== this.callId()) return;
    this.invitations.set(invitation.invitation_id, invitation);
    if (invitation.state === "accepted") {
      setTimeout(() => {
        if (this.invitations.get(invitation.invitation_id)?.state === "accepted") {
          this.invitations.delete(invitation.invitation_id);
          this.render();
        }
      }, ACCEPTED_SHOWN_MS);
    }
    if (invitation.state === "cancelled") this.invitations.delete(invitation.invitation_id);
    this.render();
  }

  get participants() {
    return this.view?.participants ?? [];
  }

  render() {
    const view = this.view;
    const transferring = Boolean(view?.transfer);
    const pending = [...this.invitations.values()].filter((i) => OPEN_INVITATION.has(i.state)).length;
    const full = this.participants.length + pending >= MAX_PARTICIPANTS;
    const invite = byTestId("invite-department");
    invite.disabled = this.busy || transferring || full;
    byTestId("transfer-department").disabled = this.busy || transferring;
    // Leaving goes on without this expert only while another expert stays; the
    // last expert ends the call (end-call, which asks first).
    const otherExpert = this.participants.some((p) => p.role === "expert" && p.position !== view?.you);
    byTestId("leave-call").hidden = this.expert && !otherExpert;
    const share = byTestId("share-screen");
    share.setAttribute("aria-pressed", this.sharing ? "true" : "false");
    setText(share, this.sharing ? "expert.stop_share" : "expert.share_screen");
    const note = document.getElementById("sharing-note");
    note.hidden = !this.sharing;
    if (this.sharing) setText(note, "expert.sharing");
    if (full && !this.inviteChooser.hidden) this.closeChoosers();
    // Where the department records: asking the citizen, then waiting for the answer.
    const record = byTestId("record-request");
    const records = Boolean(this.departments.get(this.me.department)?.recording);
    record.hidden = !this.expert || !records || !view || view.recording === "on";
    record.disabled = view?.recording === "asked";
    setText(record, view?.recording === "asked" ? "recording.asking" : "recording.request");
    this.renderInvitations();
  }

  async requestRecording() {
    const id = this.callId();
    if (!id) return;
    try {
      const view = await this.send("request_recording", { consultation_id: id });
      this.onView(view);
    } catch {
      this.say("recording.request_failed");
    }
  }

  renderInvitations() {
    this.list.replaceChildren();
    for (const invitation of this.invitations.values()) {
      const item = document.createElement("li");
      item.dataset.testid = "invitation";
      item.dataset.state = invitation.state;
      item.dataset.department = invitation.department;
      item.dataset.kind = invitation.kind ?? "invite";
      item.append(textElement("span", `expert.invitation.${invitation.state}`, { department: this.departmentName(invitation.department) }));
      const inviter = this.mine.has(invitation.invitation_id) || (invitation.by && invitation.by === this.me.username);
      if (OPEN_INVITATION.has(invitation.state) && inviter) {
        const cancel = textElement("button", "expert.invitation_cancel", null, "secondary small");
        cancel.type = "button";
        cancel.dataset.testid = "cancel-invite";
        cancel.addEventListener("click", () => this.cancel(invitation));
        item.append(cancel);
      } else if (invitation.state === "expired") {
        const dismiss = textElement("button", "expert.invitation_dismiss", null, "secondary small");
        dismiss.type = "button";
        dismiss.dataset.testid = "invitation-dismiss";
        dismiss.addEventListener("click", () => {
          this.invitations.delete(invitation.invitation_id);
          this.render();
        });
        item.append(dismiss);
      }
      this.list.append(item);
    }
    this.list.hidden = this.list.children.length === 0;
  }

  // ---- the choosers ------------------------------------------------------------

  async openChooser(chooser) {
    const other = chooser === this.inviteChooser ? this.transferChooser : this.inviteChooser;
    other.hidden = true;
    if (!chooser.hidden) {
      this.closeChoosers();
      return;
    }
    this.say(null);
    await this.loadDepartments();
    if (chooser === this.inviteChooser) this.renderInviteChoices();
    else this.renderTransferChoices();
    chooser.hidden = false;
    this.expanded();
    chooser.querySelector("input")?.focus();
  }

  closeChoosers() {
    this.inviteChooser.hidden = true;
    this.transferChooser.hidden = true;
    this.expanded();
  }

  expanded() {
    byTestId("invite-department").setAttribute("aria-expanded", String(!this.inviteChooser.hidden));
    byTestId("transfer-department").setAttribute("aria-expanded", String(!this.transferChooser.hidden));
  }

  choice(prefix, department, onChoose) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "choice secondary";
    button.dataset.testid = `${prefix}-${department.code}`;
    button.append(textElement("span", "call.department", { name: nameOf(department) }, "choice-name"));
    const online = this.online.get(department.code);
    if (online !== undefined) {
      button.append(textElement("span", online > 0 ? "expert.online" : "expert.nobody_online", { n: online }, online > 0 ? "choice-online" : "choice-offline"));
    }
    if (department.languages?.length) {
      const languages = document.createElement("span");
      languages.className = "choice-languages";
      const list = document.createElement("span");
      list.translate = false;
      list.textContent = department.languages.join("、");
      languages.append(textElement("span", "expert.languages"), list);
      button.append(languages);
    }
    button.addEventListener("click", () => onChoose(department.code));
    return button;
  }

  // Every department but one's own: services first, then the interpreter pools
  // with their languages.
  renderInviteChoices() {
    const holder = document.getElementById("invite-options");
    holder.replaceChildren();
    const others = [...this.departments.values()].filter((d) => !d.disabled && d.code !== this.me.department);
    const pools = others.filter((d) => d.kind === "interpreter");
    for (const department of others.filter((d) => d.kind !== "interpreter")) {
      holder.append(this.choice("invite", department, (code) => this.invite(code)));
    }
    if (pools.length) {
      holder.append(textElement("h4", "expert.invite_pool", null, "choice-group"));
      for (const department of pools) holder.append(this.choice("invite", department, (code) => this.invite(code)));
    }
  }

  // Only where the admin allows this department to hand citizens to.
  renderTransferChoices() {
    const holder = document.getElementById("transfer-options");
    holder.replaceChildren();
    const allowed = this.departments.get(this.me.department)?.transfers_to ?? [];
    for (const code of allowed) {
      const department = this.departments.get(code);
      if (department && !department.disabled) holder.append(this.choice("transfer", department, (c) => this.transfer(c)));
    }
    document.getElementById("transfer-none").hidden = holder.children.length > 0;
  }

  errorKey(err) {
    return (
      {
        call_full: "expert.call_full",
        already_invited: "expert.already_invited",
        transfer_not_allowed: "expert.transfer_refused",
      }[err?.code] ?? "error.generic"
    );
  }

  async invite(code) {
    const note = byTestId("invite-note").value.trim();
    const payload = { consultation_id: this.callId(), department: code };
    if (note) payload.note = note;
    try {
      const invitation = await this.send("invite", payload);
      this.mine.add(invitation.invitation_id);
      this.invitations.set(invitation.invitation_id, invitation);
      byTestId("invite-note").value = "";
      this.closeChoosers();
      this.render();
    } catch (err) {
      this.say(this.errorKey(err));
    }
  }

  async cancel(invitation) {
    try {
      const view = await this.send("cancel_invite", { invitation_id: invitation.invitation_id });
      if (view) this.invitationEvent(view);
    } catch (err) {
      this.say(this.errorKey(err));
    }
  }

  async transfer(code) {
    const reasonInput = byTestId("transfer-reason");
    const reason = reasonInput.value.trim();
    if (!reason) {
      this.say("expert.transfer_reason_missing");
      reasonInput.focus();
      return;
    }
    this.busy = true;
    this.render();
    try {
      const view = await this.send("transfer", { consultation_id: this.callId(), department: code, reason });
      reasonInput.value = "";
      this.closeChoosers();
      this.onLeft(view);
    } catch (err) {
      this.say(this.errorKey(err));
    } finally {
      this.busy = false;
      this.render();
    }
  }

  async leave() {
    const id = this.callId();
    if (!id) return;
    this.busy = true;
    this.render();
    try {
      const view = await this.send("leave_call", { consultation_id: id });
      this.onLeft(view ?? { consultation_id: id, state: "ended" });
    } catch (err) {
      this.say(this.errorKey(err));
    } finally {
      this.busy = false;
      this.render();
    }
  }

  // ---- the screen ------------------------------------------------------------

  async toggleScreen() {
    if (this.sharing) {
      await this.stopScreen({ tell: true });
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
    } catch (err) {
      // Cancelled in the browser's own chooser: nothing to say.
      if (err?.name !== "NotAllowedError" && err?.name !== "AbortError") this.say("expert.share_failed");
      return;
    }
    const track = stream.getVideoTracks()[0];
    if (!this.callId() || !track) {
      for (const t of stream.getTracks()) t.stop();
      return;
    }
    await this.call.shareScreen(track);
    this.sharing = true;
    this.sharePending = true;
    this.render();
    try {
      const view = await this.send("share_screen", { consultation_id: this.callId(), sharing: true });
      this.sharePending = false;
      if (view) this.onView(view);
    } catch (err) {
      this.sharePending = false;
      await this.stopScreen({ tell: false });
      this.say(this.errorKey(err));
    }
  }

  // Stopped here, by the browser's own control, or taken over by another expert
  // (`tell`: whether the server still thinks this side shares).
  async stopScreen({ tell }) {
    if (!this.sharing) return;
    this.sharing = false;
    await this.call.shareScreen(null);
    this.render();
    if (tell && this.callId()) {
      const view = await this.send("share_screen", { consultation_id: this.callId(), sharing: false }).catch(() => null);
      if (view) this.onView(view);
    }
  }

  clear() {
    this.view = null;
    this.sharing = false;
    this.sharePending = false;
    this.busy = false;
    this.invitations.clear();
    this.mine.clear();
    this.closeChoosers();
    this.say(null);
    byTestId("invite-note").value = "";
    byTestId("transfer-reason").value = "";
    this.render();
  }
}
