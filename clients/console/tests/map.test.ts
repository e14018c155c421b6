// The map's own logic: the filters in the address and the query they make, the box routing accepts, colours.
import { describe, expect, it } from "vitest";

import {
  boundedBox, clusterTone, covers, DEADLINE_RINGS, extentOf, filtersFromQuery, gridShade, intersect, markerLook,
  MAX_BOX_SPAN_DEG, NO_FILTERS,
  pointsQuery, queryFromFilters, STATUS_COLOURS,
} from "@/map/points";

const NOW = Date.parse("2026-11-24T08:00:00Z");
const CITY = { minLng: 118.25, minLat: 35.0, maxLng: 118.45, maxLat: 35.2 };

describe("the filters in the address", () => {
  it("reads what the map offers and drops the rest", () => {
    expect(filtersFromQuery({ status: "accepted", department: "sanitation", category: "env.garbage",
      grid_id: "lanshan-01", period: "30d" })).toEqual({ status: "accepted", department: "sanitation",
      category: "env.garbage", grid_id: "lanshan-01", period: "30d" });
    expect(filtersFromQuery({ status: "lost", period: "5y", department: ["a", "b"] })).toEqual(NO_FILTERS);
  });

  it("writes only what is set, and reads back what it wrote", () => {
    expect(queryFromFilters(NO_FILTERS)).toEqual({});
    const filters = { ...NO_FILTERS, status: "dispatched" as const, grid_id: "hedong-03", period: "7d" as const };
    expect(queryFromFilters(filters)).toEqual({ status: "dispatched", grid_id: "hedong-03", period: "7d" });
    expect(filtersFromQuery(queryFromFilters(filters))).toEqual(filters);
  });
});

describe("the query for routing's points", () => {
  it("carries the box in GeoJSON order and only the filters that are set", () => {
    expect(pointsQuery(CITY, NO_FILTERS, NOW)).toEqual({ bbox: "118.25,35,118.45,35.2" });
    expect(pointsQuery(CITY, { ...NO_FILTERS, category: "env.garbage", department: "sanitation" }, NOW)).toEqual({
      bbox: "118.25,35,118.45,35.2", category: "env.garbage", department: "sanitation" });
  });

  it("turns a period into the opening time it starts at", () => {
    expect(pointsQuery(CITY, { ...NO_FILTERS, period: "7d" }, NOW).from).toBe("2026-11-17T08:00:00.000Z");
  });

  it("asks for finished cases over the last 30 days unless a period is chosen (routing needs one)", () => {
    expect(pointsQuery(CITY, { ...NO_FILTERS, status: "closed" }, NOW).from).toBe("2026-10-25T08:00:00.000Z");
    expect(pointsQuery(CITY, { ...NO_FILTERS, status: "rejected", period: "7d" }, NOW).from)
      .toBe("2026-11-17T08:00:00.000Z");
    expect(pointsQuery(CITY, { ...NO_FILTERS, status: "accepted" }, NOW).from).toBeUndefined();
  });
});

describe("the box the map may ask for", () => {
  it("is the view when the view is small enough", () => {
    expect(boundedBox(CITY)).toEqual({ box: CITY, clipped: false });
  });

  it("is the view's middle, at most the bound each way, when the view is larger", () => {
    const { box, clipped } = boundedBox({ minLng: 110, minLat: 30, maxLng: 126, maxLat: 40 });
    expect(clipped).toBe(true);
    expect(box).toEqual({ minLng: 117, minLat: 34, maxLng: 119, maxLat: 36 });
    expect(box.maxLng - box.minLng).toBeLessThanOrEqual(MAX_BOX_SPAN_DEG);
  });

  it("stays on the globe and rounds to a millionth of a degree", () => {
    const { box } = boundedBox({ minLng: 179.5, minLat: 89.5, maxLng: 180.7, maxLat: 90.4 });
    expect(box.maxLat).toBe(90);
    expect(box.maxLng).toBe(180);
    expect(boundedBox({ minLng: 118.1234567891, minLat: 35, maxLng: 118.2, maxLat: 35.1 }).box.minLng).toBe(118.123457);
  });
});

describe("colours", () => {
  it("fills a marker by status and rings it by deadline", () => {
    expect(markerLook({ status: "dispatched", deadline: "running" })).toEqual({
      fill: STATUS_COLOURS.dispatched, ring: DEADLINE_RINGS.running, urgent: false });
    expect(markerLook({ status: "accepted", deadline: "overdue" })).toEqual({
      fill: STATUS_COLOURS.accepted, ring: DEADLINE_RINGS.overdue, urgent: true });
    expect(markerLook({ status: "dispatched", deadline: "due_soon" }).ring).toBe(DEADLINE_RINGS.due_soon);
    expect(markerLook({ status: "pending_triage", deadline: "none" }).urgent).toBe(false);
  });

  it("gives every status its own fill, and overdue and due soon rings that differ from the rest", () => {
    expect(new Set(Object.values(STATUS_COLOURS)).size).toBe(Object.keys(STATUS_COLOURS).length);
    expect(DEADLINE_RINGS.overdue).not.toBe(DEADLINE_RINGS.due_soon);
    expect(DEADLINE_RINGS.overdue).not.toBe(DEADLINE_RINGS.running);
  });

  it("makes a cluster as urgent as its most urgent case", () => {
    expect(clusterTone(["running", "overdue", "due_soon"])).toBe("overdue");
    expect(clusterTone(["running", "due_soon", "none"])).toBe("due_soon");
    expect(clusterTone(["running", "none"])).toBe("calm");
  });

  it("shades a grid cell by its share of the busiest cell", () => {
    expect(gridShade(0, 10)).toBe(0.04);
    expect(gridShade(10, 10)).toBe(0.5);
    expect(gridShade(5, 10)).toBe(0.31);
  });
});

describe("the city's extent", () => {
  const square = (lng: number, lat: number) => ({ type: "Polygon",
    coordinates: [[[lng, lat], [lng + 0.03, lat], [lng + 0.03, lat + 0.04], [lng, lat + 0.04], [lng, lat]]] });

  it("is the box around every grid cell", () => {
    expect(extentOf([square(118.3, 35.038), square(118.41, 35.08)])).toEqual({
      minLng: 118.3, minLat: 35.038, maxLng: 118.44, maxLat: 35.12 });
    expect(extentOf([{ type: "MultiPolygon", coordinates: [square(1, 2).coordinates] }])).toEqual({
      minLng: 1, minLat: 2, maxLng: 1.03, maxLat: 2.04 });
    expect(extentOf([])).toBeNull();
  });

  it("bounds what the map asks for, and a view inside what was asked asks nothing new", () => {
    const city = { minLng: 118.3, minLat: 35.038, maxLng: 118.44, maxLat: 35.12 };
    const view = { minLng: 118.1, minLat: 35.0, maxLng: 118.6, maxLat: 35.2 };
    expect(intersect(view, city)).toEqual(city);
    expect(intersect({ minLng: 100, minLat: 20, maxLng: 101, maxLat: 21 }, city)).toBeNull();
    expect(covers(city, { minLng: 118.31, minLat: 35.05, maxLng: 118.35, maxLat: 35.1 })).toBe(true);
    expect(covers(city, view)).toBe(false);
  });
});
