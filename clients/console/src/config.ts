/**
 * Where the services are, the city's time zone, and the city's OpenID Connect provider when staff sign in through
 * it: /config.json, which the console's server writes from its settings (deploy/console.py), so that one build
 * serves every deployment.
 */
import type { ClaimMapping, ClaimSource, ProviderConfig } from "@/auth/oidc";

export const SERVICES = ["intake", "routing", "hours", "notify"] as const;
export type ServiceName = (typeof SERVICES)[number];

export interface ConsoleConfig {
  services: Record<ServiceName, string>;
  /** An IANA zone, e.g. Asia/Shanghai: every time the console shows is in it. */
  timeZone: string;
  /** The provider staff sign in through (CONSOLE_OIDC_*), or null: sign-in links only. */
  oidc: ProviderConfig | null;
  /** The map's base tiles (a {z}/{x}/{y} URL template) and their attribution; null: the grid cells alone. */
  tiles: { url: string; attribution: string } | null;
}

let loaded: ConsoleConfig | null = null;

export async function loadConfig(): Promise<ConsoleConfig> {
  const response = await fetch("/config.json", { cache: "no-store" });
  if (!response.ok) {
    throw new Error(`/config.json: HTTP ${response.status}`);
  }
  loaded = parseConfig(await response.json());
  return loaded;
}

export function config(): ConsoleConfig {
  if (loaded === null) {
    throw new Error("The console's configuration is not loaded yet.");
  }
  return loaded;
}

export function parseConfig(value: unknown): ConsoleConfig {
  if (typeof value !== "object" || value === null) {
    throw new Error("/config.json is not an object");
  }
  const fields: Record<string, unknown> = { ...value };
  const services: Record<string, unknown> = typeof fields.services === "object" && fields.services !== null
    ? { ...fields.services } : {};
  const urls = Object.fromEntries(SERVICES.map((name) => {
    const url = services[name];
    if (typeof url !== "string") {
      throw new Error(`/config.json names no URL for ${name}`);
    }
    return [name, url];
  }));
  if (typeof fields.timeZone !== "string") {
    throw new Error("/config.json names no timeZone");
  }
  return { services: urls as Record<ServiceName, string>, timeZone: fields.timeZone,
    oidc: fields.oidc === undefined || fields.oidc === null ? null : parseProvider(fields.oidc),
    tiles: parseTiles(fields.tiles) };
}

function parseProvider(value: unknown): ProviderConfig {
  const fields = record(value, "oidc");
  const claims = record(fields.claims, "oidc.claims");
  const text = (field: unknown, name: string): string => {
    if (typeof field !== "string") {
      throw new Error(`/config.json: ${name} is not a string`);
    }
    return field;
  };
  const source = (field: unknown, name: string): ClaimSource => {
    const parts = record(field, name);
    return { path: text(parts.path, `${name}.path`), prefix: text(parts.prefix, `${name}.prefix`) };
  };
  const roles = Array.isArray(claims.roles) ? claims.roles : [];
  const mapping: ClaimMapping = {
    role: source(claims.role, "oidc.claims.role"),
    roles: roles.map((pair: unknown, i) => {
      const [value, role] = Array.isArray(pair) ? pair : [];
      return [text(value, `oidc.claims.roles[${i}]`), text(role, `oidc.claims.roles[${i}]`)];
    }),
    dept: source(claims.dept, "oidc.claims.dept"),
    grid: source(claims.grid, "oidc.claims.grid"),
  };
  return { issuer: text(fields.issuer, "oidc.issuer"), clientId: text(fields.clientId, "oidc.clientId"),
    scopes: text(fields.scopes, "oidc.scopes"), name: typeof fields.name === "string" ? fields.name : "",
    claims: mapping };
}

function record(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`/config.json: ${name} is not an object`);
  }
  return { ...value };
}

/** The map's tiles: an http(s) URL template with {z}, {x} and {y}; anything else leaves the map without tiles. */
export function parseTiles(value: unknown): ConsoleConfig["tiles"] {
  if (typeof value !== "object" || value === null) {
    return null;
  }
  const { url, attribution } = value as Record<string, unknown>;
  if (typeof url !== "string" || !/^https?:\/\//.test(url) || !["{z}", "{x}", "{y}"].every((p) => url.includes(p))) {
    return null;
  }
  return { url, attribution: typeof attribution === "string" ? attribution : "" };
}
