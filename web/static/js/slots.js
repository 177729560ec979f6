// Who is seen where: the call's fixed media slots (docs/PROTOCOL.md, "Media"). The
// page's one offer carries three audio/video pairs to receive (slots 0, 1, 2: mids
// 0/1, 2/3, 4/5) and one screen (mid 6); the relay forwards the participant at
// position s into slot `slotOf(r, s)` of the receiver at position r. The same rule
// is media/'s (Python); both are tested against one table.
// Pure: no DOM, no connection.

export const SLOTS = 3;

// The slot of the sender at position `sender` in the connection of the receiver at
// position `receiver` (positions 0..3, the kiosk 0): the others in position order,
// with the receiver's own position left out (null: oneself, or no position).
export function slotOf(receiver, sender) {
  if (!Number.isInteger(receiver) || !Number.isInteger(sender) || receiver === sender) return null;
  return sender < receiver ? sender : sender - 1;
}

// The other participant shown in each slot (null: nobody), from the consultation
// view's `participants` and `you` (own position). A view without `participants`
// (a server of before three-way calls) is a call of two: the other side in slot 0.
export function slotsOf(view, mySide) {
  const slots = new Array(SLOTS).fill(null);
  if (!Array.isArray(view?.participants)) {
    slots[0] = mySide === "kiosk" ? { role: "expert", department: view?.department ?? null, position: 1 } : { role: "kiosk", department: null, position: 0 };
    return slots;
  }
  const you = Number.isInteger(view.you) ? view.you : null;
  for (const person of view.participants) {
    if (you === null || person.position === you) continue;
    const slot = slotOf(you, person.position);
    if (slot !== null && slot >= 0 && slot < SLOTS) slots[slot] = person;
  }
  return slots;
}

// The participant sharing a screen now, unless it is oneself (null: nobody).
export function sharerOf(view) {
  if (!Number.isInteger(view?.screen) || view.screen === view.you) return null;
  return (view.participants ?? []).find((p) => p.position === view.screen) ?? { position: view.screen, role: "expert" };
}
