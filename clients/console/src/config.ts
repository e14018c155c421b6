/**
 * Where the services are, and the city's time zone: /config.json, which the console's server writes from its
 * settings (deploy/console.py), so that one build serves every deployment.
 */
export const SERVICES = ["intake", "routing", "hours", "notify"] as const;
export type ServiceName = (typeof SERVICES)[number];

export interface ConsoleConfig {
  services: Record<ServiceName, string>;
  /** An IANA zone, e.g. Asia/Shanghai: every time the console shows is in it. */
  timeZone: string;
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
  return { services: urls as Record<ServiceName, string>, timeZone: fields.timeZone, tiles: parseTiles(fields.tiles) };
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
