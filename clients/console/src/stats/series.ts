/**
 * The league tables month by month (routing's /v1/stats/departments/monthly and /grids/monthly) as the series the
 * charts draw: one line per department (or grid), one point per month, a gap where a month has no figure (no
 * case was due, so there is no rate: not 0 %). Pure.
 */

export const MEASURES = ["on_time_rate", "rework_rate", "avg_hours_to_rectify", "overdue_open"] as const;
export type Measure = (typeof MEASURES)[number];

/** What a row of either league table carries of the measures. */
export interface LeagueRow {
  on_time_rate: number | null;
  rework_rate: number | null;
  avg_hours_to_rectify: number | null;
  overdue_open: number;
}

export interface MonthOfRows<Row> {
  month: string;
  items: Row[];
}

export interface Series {
  key: string;
  data: (number | null)[];
}

/** A rate as a percentage to one decimal; hours and counts as they are. */
export function shown(measure: Measure, value: number | null): number | null {
  if (value === null) {
    return null;
  }
  return measure.endsWith("_rate") ? Math.round(value * 1000) / 10 : value;
}

/** One series per key that any month has, in the order they first appear, each with a value for every month. */
export function monthlySeries<Row extends LeagueRow>(months: MonthOfRows<Row>[], keyOf: (row: Row) => string,
  measure: Measure): { months: string[]; series: Series[] } {
  const keys: string[] = [];
  const byMonth = months.map((month) => {
    const rows = new Map<string, Row>();
    for (const row of month.items) {
      const key = keyOf(row);
      if (!keys.includes(key)) {
        keys.push(key);
      }
      rows.set(key, row);
    }
    return rows;
  });
  return {
    months: months.map((m) => m.month),
    series: keys.map((key) => ({
      key,
      data: byMonth.map((rows) => {
        const row = rows.get(key);
        return row === undefined ? null : shown(measure, row[measure]);
      }),
    })),
  };
}

/** Keys with no figure in any month: the charts leave them out, the table below still lists them. */
export function withFigures(series: Series[]): Series[] {
  return series.filter((s) => s.data.some((value) => value !== null));
}
