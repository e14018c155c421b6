import { describe, expect, it } from "vitest";

import { allowedActions } from "@/cases/actions";

const none = null;
const waiting = { status: "requested" };
const decided = { status: "approved" };

describe("the commands a case offers", () => {
  it.each([
    ["pending_triage", none, ["dispatch", "reject", "merge"]],
    ["dispatched", none, ["dispatch", "reject", "merge"]],
    ["dispatched", waiting, ["dispatch", "extension/decision", "reject", "merge"]],
    ["accepted", waiting, ["dispatch", "extension/decision", "reject", "merge"]],
    ["rectified", none, ["verify", "reject", "merge"]],
    ["closed", none, []],
    ["rejected", none, []],
  ])("the office, a case %s (extension %o): %o", (status, extension, expected) => {
    expect(allowedActions({ status, extension }, "office")).toEqual(expected);
  });

  it.each([
    ["pending_triage", none, []],
    ["dispatched", none, ["accept", "dispute", "extension"]],
    ["dispatched", waiting, ["accept", "dispute"]],
    ["accepted", none, ["dispute", "rectify", "extension"]],
    ["accepted", decided, ["dispute", "rectify", "extension"]],
    ["accepted", waiting, ["dispute", "rectify"]],
    ["rectified", none, []],
    ["closed", none, []],
  ])("a department, a case %s (extension %o): %o", (status, extension, expected) => {
    expect(allowedActions({ status, extension }, "department")).toEqual(expected);
  });

  it.each(["grid_leader", "association", "volunteer", "service"])("%s may only read", (role) => {
    for (const status of ["pending_triage", "dispatched", "accepted", "rectified"]) {
      expect(allowedActions({ status, extension: waiting }, role)).toEqual([]);
      expect(allowedActions({ status, extension: none }, role)).toEqual([]);
    }
  });
});
