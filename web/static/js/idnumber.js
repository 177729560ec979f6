// Citizen identity numbers (GB 11643-1999), the same rule as the server's
// storage/identity_numbers.py: which part of a typed number is wrong, or null.
const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK = "10X98765432";

export function normalizeIdNumber(value) {
  return value.replace(/[\s-]/g, "").toUpperCase();
}

export function idNumberProblem(value, today = new Date()) {
  const n = normalizeIdNumber(value);
  if (n.length !== 18) return "length";
  if (!/^[0-9]{17}[0-9X]$/.test(n)) return "characters";
  if (!/^[1-8]/.test(n)) return "region";
  const year = Number(n.slice(6, 10));
  const month = Number(n.slice(10, 12));
  const day = Number(n.slice(12, 14));
  const born = new Date(year, month - 1, day);
  if (born.getFullYear() !== year || born.getMonth() !== month - 1 || born.getDate() !== day) return "birth_date";
  if (year < 1900 || born > today) return "birth_date";
  const total = WEIGHTS.reduce((sum, w, i) => sum + w * Number(n[i]), 0);
  if (CHECK[total % 11] !== n[17]) return "check";
  return null;
}

// First 3 and last 4 characters, as every page shows a number.
export function maskIdNumber(value) {
  const n = normalizeIdNumber(value);
  return n.length <= 7 ? "*".repeat(n.length) : n.slice(0, 3) + "*".repeat(n.length - 7) + n.slice(-4);
}
