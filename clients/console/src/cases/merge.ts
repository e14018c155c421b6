/**
 * Picking the case a duplicate is merged into. Routing decides (POST /v1/cases/{id}/merge answers 409 for a pair it
 * does not allow); the console only offers the cases it would take: open, of the same category, not the case
 * itself, the nearest first, as the office looks for the same problem reported a little farther away.
 */
import table from "./actions.json";

/** The statuses a case can be merged from and into: the open ones (the same list as the merge command's). */
export const MERGEABLE_STATUSES: readonly string[] = table.merge.statuses;

/** What the picker needs of a case. */
export interface MergeCase {
  id: string;
  category: string;
  status: string;
  location: { lat: number; lng: number };
}

/** Why a case cannot take the duplicate's reports, as an i18n key; null when it can. */
export type Ineligible = "merge.same" | "merge.otherCategory" | "merge.notOpen";

export function ineligibility(source: MergeCase, target: MergeCase): Ineligible | null {
  if (source.id === target.id) {
    return "merge.same";
  }
  if (target.category !== source.category) {
    return "merge.otherCategory";
  }
  return MERGEABLE_STATUSES.includes(target.status) ? null : "merge.notOpen";
}

const EARTH_RADIUS_M = 6_371_000;

/** The great-circle distance between two points, in metres. */
export function distanceMetres(a: { lat: number; lng: number }, b: { lat: number; lng: number }): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLng = (b.lng - a.lng) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLng / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** The cases `source` may be merged into, each once, the nearest first (ties: by id, so the order is stable). */
export function mergeTargets<T extends MergeCase>(source: MergeCase, candidates: readonly T[]): T[] {
  const seen = new Set<string>();
  const eligible = candidates.filter((c) => {
    if (seen.has(c.id) || ineligibility(source, c) !== null) {
      return false;
    }
    seen.add(c.id);
    return true;
  });
  const away = (c: T) => distanceMetres(source.location, c.location);
  return eligible.sort((a, b) => away(a) - away(b) || a.id.localeCompare(b.id));
}
