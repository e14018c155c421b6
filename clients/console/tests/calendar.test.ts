import { describe, expect, it } from "vitest";

import { filenameFrom } from "@/api/download";
import {
  isoWeekOf, monthAt, monthsEndingWith, parseWeek, shiftWeek, weekAt, weekDays, weeksBefore, weeksInYear,
} from "@/calendar";

describe("months in the city's zone", () => {
  it("are the city's month, not the browser's", () => {
    // 31 December 2026, 17:00 UTC is already 1 January 2027 in Shanghai.
    expect(monthAt(Date.parse("2026-12-31T17:00:00Z"), "Asia/Shanghai")).toBe("2027-01");
    expect(monthAt(Date.parse("2026-12-31T17:00:00Z"), "UTC")).toBe("2026-12");
  });

  it("count back across a new year", () => {
    expect(monthsEndingWith("2027-02", 4)).toEqual(["2026-11", "2026-12", "2027-01", "2027-02"]);
    expect(monthsEndingWith("2026-12", 12)).toHaveLength(12);
    expect(monthsEndingWith("2026-12", 12)[0]).toBe("2026-01");
  });
});

describe("ISO weeks", () => {
  it.each([
    [[2026, 11, 16], "2026-W47"],
    [[2026, 11, 22], "2026-W47"],
    [[2027, 1, 1], "2026-W53"], // a Friday: its Thursday is in 2026, which has 53 weeks
    [[2026, 1, 1], "2026-W01"],
    [[2024, 12, 30], "2025-W01"], // a Monday whose Thursday is in 2025
    [[2021, 1, 3], "2020-W53"],
  ])("%j is in %s", ([year, month, day], label) => {
    const week = isoWeekOf(year as number, month as number, day as number);
    expect(`${week.year}-W${String(week.week).padStart(2, "0")}`).toBe(label);
  });

  it("is the city's week at the turn of a Sunday night", () => {
    // Sunday 22 November 2026, 16:30 UTC is Monday 23 November, 00:30 in Shanghai.
    expect(weekAt(Date.parse("2026-11-22T16:30:00Z"), "Asia/Shanghai")).toBe("2026-W48");
    expect(weekAt(Date.parse("2026-11-22T16:30:00Z"), "UTC")).toBe("2026-W47");
  });

  it("knows which years have a week 53", () => {
    expect([2020, 2021, 2026, 2027].map(weeksInYear)).toEqual([53, 52, 53, 52]);
    expect(parseWeek("2026-W53")).toEqual({ year: 2026, week: 53 });
    expect(parseWeek("2027-W53")).toBeNull();
    expect(parseWeek("2026-W00")).toBeNull();
    expect(parseWeek("2026-47")).toBeNull();
  });

  it("step back and forth across a year's end", () => {
    expect(shiftWeek("2027-W01", -1)).toBe("2026-W53");
    expect(shiftWeek("2026-W53", 1)).toBe("2027-W01");
    expect(shiftWeek("2026-W47", -47)).toBe("2025-W52");
    expect(weeksBefore("2027-W02", 3)).toEqual(["2027-W02", "2027-W01", "2026-W53"]);
  });

  it("run Monday to Sunday", () => {
    expect(weekDays("2026-W47")).toEqual(["2026-11-16", "2026-11-22"]);
    expect(weekDays("2026-W53")).toEqual(["2026-12-28", "2027-01-03"]);
  });
});

describe("a download's file name", () => {
  it.each([
    ['attachment; filename="department-league.xlsx"', "department-league.xlsx"],
    ["attachment; filename=weekly-lanshan-01-2026-W47.xlsx", "weekly-lanshan-01-2026-W47.xlsx"],
    ["attachment; filename*=UTF-8''%E5%91%A8%E6%8A%A5.xlsx; filename=\"weekly.xlsx\"", "周报.xlsx"],
    ['attachment; filename="../../etc/passwd"', "passwd"],
    ['attachment; filename=""', "fallback.xlsx"],
    [null, "fallback.xlsx"],
  ])("%s → %s", (header, name) => {
    expect(filenameFrom(header, "fallback.xlsx")).toBe(name);
  });
});
