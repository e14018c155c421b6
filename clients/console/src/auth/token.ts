/**
 * A bearer token as the console holds it: taken from a sign-in link's fragment (`#token=<JWT>`), read (not
 * verified: the services verify every request), and judged for expiry. Pure functions, unit-tested.
 */

/** The roles this console serves; other roles have their own clients. */
export const STAFF_ROLES = ["office", "department", "grid_leader"] as const;
export type StaffRole = (typeof STAFF_ROLES)[number];

/** The claims the services read (docs/contract.md, "Tokens"). */
export interface Claims {
  sub: string;
  role: string;
  dept?: string;
  grid?: string;
  /** Seconds since 1970. */
  exp: number;
}

/** Why there is no usable session: the sign-in page words each. */
export type SignedOutReason = "missing" | "expired" | "invalid" | "not-staff";

export interface Session {
  token: string;
  claims: Claims;
}

/** `#token=…` (alone or among other fragment parameters) → the token, and the fragment to leave in the address. */
export function takeTokenFromFragment(hash: string): { token: string | null; rest: string } {
  const fragment = hash.startsWith("#") ? hash.slice(1) : hash;
  if (!fragment) {
    return { token: null, rest: "" };
  }
  const parameters = new URLSearchParams(fragment);
  const token = parameters.get("token");
  if (token === null) {
    return { token: null, rest: hash };
  }
  parameters.delete("token");
  const rest = parameters.toString();
  return { token: token.trim() || null, rest: rest ? `#${rest}` : "" };
}

/** The claims of a JWT, or null when it is not one the services could have issued. */
export function readClaims(token: string): Claims | null {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[1] === undefined) {
    return null;
  }
  let payload: unknown;
  try {
    payload = JSON.parse(decodeBase64Url(parts[1]));
  } catch {
    return null;
  }
  if (typeof payload !== "object" || payload === null) {
    return null;
  }
  const claims: Record<string, unknown> = { ...payload };
  const { sub, role, dept, grid, exp } = claims;
  if (typeof sub !== "string" || typeof role !== "string" || typeof exp !== "number") {
    return null;
  }
  return {
    sub, role, exp,
    ...(typeof dept === "string" ? { dept } : {}),
    ...(typeof grid === "string" ? { grid } : {}),
  };
}

/** A session for this token now, or why it cannot be one. */
export function judge(token: string | null, nowMs: number): Session | SignedOutReason {
  if (!token) {
    return "missing";
  }
  const claims = readClaims(token);
  if (claims === null) {
    return "invalid";
  }
  if (claims.exp * 1000 <= nowMs) {
    return "expired";
  }
  if (!isStaffRole(claims.role)) {
    return "not-staff";
  }
  return { token, claims };
}

export function isStaffRole(role: string): role is StaffRole {
  return (STAFF_ROLES as readonly string[]).includes(role);
}

function decodeBase64Url(text: string): string {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "=");
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}
