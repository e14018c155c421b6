/**
 * The map's own logic, with no Leaflet in it: which filters the address holds and the query they make, the box
 * the map may ask routing for, and how a case (or a cluster of them) is coloured. routing decides how a deadline
 * stands (`deadline` of each point, by its working-hours clock); the console only chooses the colours.
 */
import type { LocationQuery } from "vue-router";

export const STATUSES = ["pending_triage", "dispatched", "accepted", "rectified", "closed", "rejected"] as const;
export type Status = (typeof STATUSES)[number];
/** Periods the map offers, as days back from now (opening time). */
export const PERIODS = ["7d", "30d", "90d"] as const;
export type Period = (typeof PERIODS)[number];
export type Deadline = "overdue" | "due_soon" | "running" | "none";

/** What the address says the map shows; "" is "any". */
export interface MapFilters {
  status: Status | "";
  department: string;
  category: string;
  grid_id: string;
  period: Period | "";
}

export const NO_FILTERS: MapFilters = { status: "", department: "", category: "", grid_id: "", period: "" };

/** routing's bound on a box, in degrees each way (services/routing/domain.py MAX_BOX_SPAN_DEG). */
export const MAX_BOX_SPAN_DEG = 2;
const DAY_MS = 24 * 3600 * 1000;
// Finished cases are shown for a bounded period only (routing refuses them without one): a status of closed or
// rejected with no period asks for the last 30 days.
const FINISHED: readonly string[] = ["closed", "rejected"];
const FINISHED_DEFAULT_PERIOD: Period = "30d";

function text(query: LocationQuery, name: string): string {
  const value = query[name];
  return typeof value === "string" ? value : "";
}

/** The filters in an address; a value the map does not offer is dropped rather than sent. */
export function filtersFromQuery(query: LocationQuery): MapFilters {
  const status = text(query, "status");
  const period = text(query, "period");
  return {
    status: (STATUSES as readonly string[]).includes(status) ? (status as Status) : "",
    department: text(query, "department"),
    category: text(query, "category"),
    grid_id: text(query, "grid_id"),
    period: (PERIODS as readonly string[]).includes(period) ? (period as Period) : "",
  };
}

/** The address for these filters: only what is set, so that a plain /map stays plain. */
export function queryFromFilters(filters: MapFilters): Record<string, string> {
  return Object.fromEntries(Object.entries(filters).filter(([, value]) => value !== ""));
}

export interface Box {
  minLng: number;
  minLat: number;
  maxLng: number;
  maxLat: number;
}

/** The view's box as routing accepts it: within the globe's ranges and at most MAX_BOX_SPAN_DEG each way around
 * the view's centre (a map zoomed further out asks for its middle and says so). */
export function boundedBox(view: Box): { box: Box; clipped: boolean } {
  const clamp = (value: number, low: number, high: number) => Math.min(high, Math.max(low, value));
  const half = MAX_BOX_SPAN_DEG / 2;
  const centreLat = (view.minLat + view.maxLat) / 2;
  const centreLng = (view.minLng + view.maxLng) / 2;
  const clipped = view.maxLat - view.minLat > MAX_BOX_SPAN_DEG || view.maxLng - view.minLng > MAX_BOX_SPAN_DEG;
  const round = (value: number) => Math.round(value * 1e6) / 1e6;
  const box = {
    minLat: round(clamp(Math.max(view.minLat, centreLat - half), -90, 90)),
    maxLat: round(clamp(Math.min(view.maxLat, centreLat + half), -90, 90)),
    minLng: round(clamp(Math.max(view.minLng, centreLng - half), -180, 180)),
    maxLng: round(clamp(Math.min(view.maxLng, centreLng + half), -180, 180)),
  };
  return { box, clipped };
}

export function bboxParameter(box: Box): string {
  return [box.minLng, box.minLat, box.maxLng, box.maxLat].join(",");
}

export interface PointsQuery {
  bbox: string;
  status?: Status;
  department?: string;
  category?: string;
  grid_id?: string;
  from?: string;
}

/** The query of GET /v1/cases/points for a box and the filters, at `now`. */
export function pointsQuery(box: Box, filters: MapFilters, now: number): PointsQuery {
  const period = filters.period || (FINISHED.includes(filters.status) ? FINISHED_DEFAULT_PERIOD : "");
  return {
    bbox: bboxParameter(box),
    ...(filters.status ? { status: filters.status } : {}),
    ...(filters.department ? { department: filters.department } : {}),
    ...(filters.category ? { category: filters.category } : {}),
    ...(filters.grid_id ? { grid_id: filters.grid_id } : {}),
    ...(period ? { from: new Date(now - Number.parseInt(period, 10) * DAY_MS).toISOString() } : {}),
  };
}

// Fill by status; ring by deadline. Clusters take the tone of their worst deadline. Colours that carry text keep
// a contrast of at least 4.5:1 with it (WCAG AA).
export const STATUS_COLOURS: Record<Status, string> = {
  pending_triage: "#8d6e63",
  dispatched: "#1e6fd9",
  accepted: "#7b3fc4",
  rectified: "#2e8540",
  closed: "#5f6368",
  rejected: "#9e9e9e",
};
export const DEADLINE_RINGS: Record<Deadline, string> = {
  overdue: "#c62828",
  due_soon: "#f0a020",
  running: "#ffffff",
  none: "#ffffff",
};

export interface MarkerLook {
  fill: string;
  ring: string;
  /** A thick ring draws the eye: the deadline is overdue or due soon. */
  urgent: boolean;
}

export function markerLook(point: { status: string; deadline: string }): MarkerLook {
  const fill = STATUS_COLOURS[point.status as Status] ?? STATUS_COLOURS.pending_triage;
  const deadline = (point.deadline in DEADLINE_RINGS ? point.deadline : "none") as Deadline;
  return { fill, ring: DEADLINE_RINGS[deadline], urgent: deadline === "overdue" || deadline === "due_soon" };
}

export type ClusterTone = "overdue" | "due_soon" | "calm";

/** A cluster is as urgent as its most urgent case. */
export function clusterTone(deadlines: readonly string[]): ClusterTone {
  if (deadlines.includes("overdue")) {
    return "overdue";
  }
  return deadlines.includes("due_soon") ? "due_soon" : "calm";
}

/** How strongly a grid cell is shaded: by its share of the busiest cell's count, never quite clear when it has
 * any case, never opaque enough to hide what lies under it. */
export function gridShade(count: number, busiest: number): number {
  if (count <= 0 || busiest <= 0) {
    return 0.04;
  }
  return Math.round((0.12 + 0.38 * Math.min(1, count / busiest)) * 100) / 100;
}

/** The box around the grid cells' polygons (GeoJSON Polygon or MultiPolygon, [lng, lat]); null with none. Every
 * case lies in a grid cell (intake refuses a report elsewhere), so the map never needs to ask beyond it. */
export function extentOf(geometries: readonly unknown[]): Box | null {
  const positions: [number, number][] = [];
  const walk = (value: unknown): void => {
    if (Array.isArray(value) && value.length >= 2 && typeof value[0] === "number" && typeof value[1] === "number") {
      positions.push([value[0], value[1]]);
    } else if (Array.isArray(value)) {
      value.forEach(walk);
    }
  };
  for (const geometry of geometries) {
    walk((geometry as { coordinates?: unknown } | null)?.coordinates);
  }
  if (positions.length === 0) {
    return null;
  }
  const lngs = positions.map((p) => p[0]);
  const lats = positions.map((p) => p[1]);
  return { minLng: Math.min(...lngs), minLat: Math.min(...lats), maxLng: Math.max(...lngs), maxLat: Math.max(...lats) };
}

/** Where two boxes overlap; null where they do not. */
export function intersect(a: Box, b: Box): Box | null {
  const box = { minLng: Math.max(a.minLng, b.minLng), minLat: Math.max(a.minLat, b.minLat),
    maxLng: Math.min(a.maxLng, b.maxLng), maxLat: Math.min(a.maxLat, b.maxLat) };
  return box.minLng < box.maxLng && box.minLat < box.maxLat ? box : null;
}

export function covers(outer: Box, inner: Box): boolean {
  return outer.minLng <= inner.minLng && outer.minLat <= inner.minLat && outer.maxLng >= inner.maxLng
    && outer.maxLat >= inner.maxLat;
}
