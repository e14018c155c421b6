import { describe, expect, it } from "vitest";

import { distanceMetres, ineligibility, mergeTargets, MERGEABLE_STATUSES, type MergeCase } from "@/cases/merge";

const HERE = { lat: 35.06, lng: 118.315 };

function a(id: string, over: Partial<MergeCase> = {}): MergeCase {
  return { id, category: "env.garbage", status: "dispatched", location: HERE, ...over };
}

describe("the cases a duplicate may be merged into", () => {
  it("are the open ones", () => {
    expect(MERGEABLE_STATUSES).toEqual(["pending_triage", "dispatched", "accepted", "rectified"]);
  });

  it("say why one cannot take it", () => {
    const source = a("c1");
    expect(ineligibility(source, a("c1"))).toBe("merge.same");
    expect(ineligibility(source, a("c2", { category: "traffic.parking" }))).toBe("merge.otherCategory");
    expect(ineligibility(source, a("c2", { status: "closed" }))).toBe("merge.notOpen");
    expect(ineligibility(source, a("c2", { status: "rejected" }))).toBe("merge.notOpen");
    expect(ineligibility(source, a("c2", { status: "rectified" }))).toBeNull();
  });

  it("leave out the case itself, other categories, closed cases and repeats, the nearest first", () => {
    const source = a("c1");
    const far = a("far", { location: { lat: 35.07, lng: 118.315 } });
    const near = a("near", { location: { lat: 35.0603, lng: 118.315 }, status: "pending_triage" });
    const picked = mergeTargets(source, [far, a("c1"), a("closed", { status: "closed" }),
      a("parking", { category: "traffic.parking" }), near, far]);
    expect(picked.map((c) => c.id)).toEqual(["near", "far"]);
  });

  it("measure distance on the ground", () => {
    expect(distanceMetres(HERE, HERE)).toBe(0);
    // 0.003° of latitude is about 333 m.
    expect(Math.round(distanceMetres(HERE, { lat: 35.063, lng: 118.315 }))).toBe(334);
  });
});
