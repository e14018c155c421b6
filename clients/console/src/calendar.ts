/**
 * Months and ISO weeks as the office counts them: in the city's zone (from the console's configuration), never the
 * browser's. "2026-12" and "2026-W47" are the forms the services take (routing's months, intake's weeks). Pure.
 */

const DAY_MS = 86_400_000;
const MONTH = /^(\d{4})-(0[1-9]|1[0-2])$/;
const WEEK = /^(\d{4})-W(\d{2})$/;

/** The calendar date it is in `timeZone` at `ms`: [year, month (1-12), day]. */
export function localDate(ms: number, timeZone: string): [number, number, number] {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" })
    .formatToParts(new Date(ms));
  const part = (type: Intl.DateTimeFormatPartTypes) => Number(parts.find((p) => p.type === type)?.value);
  return [part("year"), part("month"), part("day")];
}

// --- months -----------------------------------------------------------------------------------

export function isMonth(text: string): boolean {
  return MONTH.test(text);
}

/** "2026-12": the month it is in the city at `ms`. */
export function monthAt(ms: number, timeZone: string): string {
  const [year, month] = localDate(ms, timeZone);
  return monthLabel(year * 12 + month - 1);
}

/** `count` months ending with `last`, oldest first: ["2026-07", …, "2026-12"]. */
export function monthsEndingWith(last: string, count: number): string[] {
  const match = MONTH.exec(last);
  if (!match) {
    throw new Error(`not a month: ${last}`);
  }
  const end = Number(match[1]) * 12 + Number(match[2]) - 1;
  return Array.from({ length: count }, (_, i) => monthLabel(end - count + 1 + i));
}

function monthLabel(index: number): string {
  return `${String(Math.floor(index / 12)).padStart(4, "0")}-${String((index % 12) + 1).padStart(2, "0")}`;
}

// --- ISO weeks --------------------------------------------------------------------------------

export interface IsoWeek {
  year: number;
  week: number;
}

/** The ISO week of a calendar date: weeks start on Monday, and week 1 holds the year's first Thursday. */
export function isoWeekOf(year: number, month: number, day: number): IsoWeek {
  const date = Date.UTC(year, month - 1, day);
  const weekday = (new Date(date).getUTCDay() + 6) % 7; // Monday 0 … Sunday 6
  const thursday = new Date(date + (3 - weekday) * DAY_MS);
  const weekYear = thursday.getUTCFullYear();
  const firstThursday = mondayOfWeekOne(weekYear) + 3 * DAY_MS;
  return { year: weekYear, week: 1 + Math.round((thursday.getTime() - firstThursday) / (7 * DAY_MS)) };
}

/** The Monday (00:00 UTC of that date) of week 1 of `year`: the week holding 4 January. */
function mondayOfWeekOne(year: number): number {
  const fourth = Date.UTC(year, 0, 4);
  return fourth - ((new Date(fourth).getUTCDay() + 6) % 7) * DAY_MS;
}

/** 52 or 53. */
export function weeksInYear(year: number): number {
  return isoWeekOf(year, 12, 28).week;
}

export function weekLabel({ year, week }: IsoWeek): string {
  return `${year}-W${String(week).padStart(2, "0")}`;
}

/** "2026-W47" → the week, or null when it is no week of that year (W53 only in years that have one). */
export function parseWeek(text: string): IsoWeek | null {
  const match = WEEK.exec(text);
  if (!match) {
    return null;
  }
  const year = Number(match[1]);
  const week = Number(match[2]);
  return week >= 1 && week <= weeksInYear(year) ? { year, week } : null;
}

/** The week it is in the city at `ms`. */
export function weekAt(ms: number, timeZone: string): string {
  return weekLabel(isoWeekOf(...localDate(ms, timeZone)));
}

/** The week `weeks` weeks after `label` (before it when negative). */
export function shiftWeek(label: string, weeks: number): string {
  const parsed = parseWeek(label);
  if (parsed === null) {
    throw new Error(`not a week: ${label}`);
  }
  const monday = new Date(mondayOfWeekOne(parsed.year) + ((parsed.week - 1 + weeks) * 7) * DAY_MS);
  return weekLabel(isoWeekOf(monday.getUTCFullYear(), monday.getUTCMonth() + 1, monday.getUTCDate()));
}

/** "2026-11-16" and "2026-11-22": the Monday and the Sunday of the week. */
export function weekDays(label: string): [string, string] {
  const parsed = parseWeek(label);
  if (parsed === null) {
    throw new Error(`not a week: ${label}`);
  }
  const monday = mondayOfWeekOne(parsed.year) + (parsed.week - 1) * 7 * DAY_MS;
  const iso = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  return [iso(monday), iso(monday + 6 * DAY_MS)];
}

/** `count` weeks ending with `last`, newest first: the choices of a week picker. */
export function weeksBefore(last: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => shiftWeek(last, -i));
}
