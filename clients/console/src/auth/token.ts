/**
 * A bearer token as the console holds it: taken from a sign-in link's fragment (`#token=<JWT>`), read (not
 * verified: the services verify every request), and judged for expiry. Pure functions, unit-tested.
 *
 * A locally signed token names our claims (`role`, `dept`, `grid`); the city's provider names them its own way,
 * and the console reads them as the services do (docs/identity.md, "Claims mapping"), with the mapping that
 * /config.json passes on from the services' settings: what the console shows is what the services will allow.
 */
import type { ClaimMapping, ClaimSource } from "./oidc";

/** Every role the services know (shared/config.py ROLES). */
const ROLES = ["volunteer", "grid_leader", "office", "department", "association", "service"];

/** Our own claim names: what a locally signed token carries, and a provider's when no mapping is set. */
export const OUR_CLAIMS: ClaimMapping = {
  role: { path: "role", prefix: "" }, roles: [], dept: { path: "dept", prefix: "" }, grid: { path: "grid", prefix: "" },
};

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

/** The claims of a JWT, read with `mapping`, or null when it is not one the services could have issued. A token
 * whose claims give no role (or several, without a table to choose) has the role "" (no staff role). */
export function readClaims(token: string, mapping: ClaimMapping = OUR_CLAIMS): Claims | null {
  const payload = readPart(token, 1);
  if (payload === null) {
    return null;
  }
  const { sub, exp } = payload;
  if (typeof sub !== "string" || typeof exp !== "number") {
    return null;
  }
  const depts = claimValues(payload, mapping.dept);
  const grids = claimValues(payload, mapping.grid);
  return {
    sub, role: mappedRole(payload, mapping), exp,
    ...(depts.length === 1 ? { dept: depts[0] } : {}),
    ...(grids.length === 1 ? { grid: grids[0] } : {}),
  };
}

/** Which mapping reads this token: ours for a locally signed one (HS256), the provider's for the provider's. */
export function mappingFor(token: string, provider: ClaimMapping | null): ClaimMapping {
  const algorithm = readPart(token, 0)?.alg;
  return provider !== null && typeof algorithm === "string" && !algorithm.startsWith("HS") ? provider : OUR_CLAIMS;
}

/** The strings `source` finds in the claims, as the services find them (shared/oidc.py claim_values). */
export function claimValues(claims: Record<string, unknown>, source: ClaimSource): string[] {
  let value: unknown = claims[source.path];
  if (!(source.path in claims)) {
    value = claims;
    for (const part of source.path.split(".")) {
      value = typeof value === "object" && value !== null && !Array.isArray(value)
        ? (value as Record<string, unknown>)[part] : undefined;
    }
  }
  let values = typeof value === "string" ? [value]
    : Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
  if (source.prefix) {
    values = values.filter((v) => v.startsWith(source.prefix)).map((v) => v.slice(source.prefix.length));
  }
  return [...new Set(values.filter(Boolean))];
}

function mappedRole(claims: Record<string, unknown>, mapping: ClaimMapping): string {
  const values = claimValues(claims, mapping.role);
  if (mapping.roles.length > 0) {
    return mapping.roles.find(([value]) => values.includes(value))?.[1] ?? "";
  }
  const ours = values.filter((value) => ROLES.includes(value));
  return ours.length === 1 ? (ours[0] ?? "") : "";
}

function readPart(token: string, index: 0 | 1): Record<string, unknown> | null {
  const parts = token.split(".");
  const part = parts[index];
  if (parts.length !== 3 || part === undefined) {
    return null;
  }
  let value: unknown;
  try {
    value = JSON.parse(decodeBase64Url(part));
  } catch {
    return null;
  }
  return typeof value === "object" && value !== null && !Array.isArray(value) ? { ...value } : null;
}

/** A session for this token now, or why it cannot be one. */
export function judge(token: string | null, nowMs: number, mapping: ClaimMapping = OUR_CLAIMS):
  Session | SignedOutReason {
  if (!token) {
    return "missing";
  }
  const claims = readClaims(token, mapping);
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
