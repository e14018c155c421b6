/** Times as people read them: in the city's zone (from the console's configuration), never the browser's. */
import type { Translate } from "@/i18n";

/** "2026-11-24 16:31" in `timeZone`. */
export function localTime(iso: string, timeZone: string): string {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).formatToParts(new Date(iso));
  const part = (type: Intl.DateTimeFormatPartTypes) => parts.find((p) => p.type === type)?.value ?? "";
  return `${part("year")}-${part("month")}-${part("day")} ${part("hour")}:${part("minute")}`;
}

/** A length of time in words, to the minute under a day and to the hour beyond. */
export function duration(ms: number, t: Translate): string {
  const minutes = Math.max(0, Math.floor(Math.abs(ms) / 60_000));
  const hours = Math.floor(minutes / 60);
  if (hours === 0) {
    return t("time.minutes", { m: minutes });
  }
  if (hours < 24) {
    return minutes % 60 ? t("time.hoursMinutes", { h: hours, m: minutes % 60 }) : t("time.hours", { h: hours });
  }
  return t("time.daysHours", { d: Math.floor(hours / 24), h: hours % 24 });
}
