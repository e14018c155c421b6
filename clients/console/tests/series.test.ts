import { describe, expect, it } from "vitest";

import { translate, type MessageKey, type Params } from "@/i18n";
import zhCN from "@/i18n/zh-CN";
import { boardTime } from "@/sla/words";
import { monthlySeries, shown, withFigures, type LeagueRow } from "@/stats/series";

interface Row extends LeagueRow {
  department: string;
}

function row(department: string, onTime: number | null, rework: number | null = null): Row {
  return { department, on_time_rate: onTime, rework_rate: rework, avg_hours_to_rectify: null, overdue_open: 0 };
}

describe("the monthly series", () => {
  const months = [
    { month: "2026-10", items: [row("sanitation", 0.5), row("traffic-police", null)] },
    { month: "2026-11", items: [row("traffic-police", 0.8754), row("sanitation", 1)] },
    { month: "2026-12", items: [row("sanitation", 0.25), row("parks", 0)] },
  ];

  it("has a point a month for every department, a gap where it has no figure", () => {
    const { months: labels, series } = monthlySeries(months, (r) => r.department, "on_time_rate");
    expect(labels).toEqual(["2026-10", "2026-11", "2026-12"]);
    expect(series).toEqual([
      { key: "sanitation", data: [50, 100, 25] },
      { key: "traffic-police", data: [null, 87.5, null] },
      { key: "parks", data: [null, null, 0] },
    ]);
  });

  it("leaves out of the chart what has no figure in any month, but keeps a 0 %", () => {
    const { series } = monthlySeries(months, (r) => r.department, "rework_rate");
    expect(withFigures(series)).toEqual([]);
    const onTime = monthlySeries(months, (r) => r.department, "on_time_rate").series;
    expect(withFigures(onTime).map((s) => s.key)).toEqual(["sanitation", "traffic-police", "parks"]);
  });

  it("shows rates as percentages and hours as they are", () => {
    expect(shown("on_time_rate", 0.8947)).toBe(89.5);
    expect(shown("avg_hours_to_rectify", 9.5)).toBe(9.5);
    expect(shown("rework_rate", null)).toBeNull();
  });
});

describe("the SLA board's time", () => {
  const t = (key: MessageKey, params?: Params) => translate(zhCN, key, params);

  it("is said on the case's own clock", () => {
    expect(boardTime({ standing: "due_soon", basis: "working", hours_left: 6.5, hours_overdue: null }, t))
      .toBe("剩 6.5 工作小时");
    expect(boardTime({ standing: "due_soon", basis: "calendar", hours_left: 23, hours_overdue: null }, t))
      .toBe("剩 23 小时");
    expect(boardTime({ standing: "overdue", basis: "working", hours_left: null, hours_overdue: 4 }, t))
      .toBe("超期 4 工作小时");
    expect(boardTime({ standing: "overdue", basis: "calendar", hours_left: null, hours_overdue: 0.04 }, t))
      .toBe("超期 0.0 小时");
  });
});
