/** How the SLA board words a case's time: hours left or overdue by, on the case's own clock. Pure. */
import type { Translate } from "@/i18n";

export interface BoardTime {
  standing: "overdue" | "due_soon";
  basis: "calendar" | "working";
  hours_left: number | null;
  hours_overdue: number | null;
}

export function boardTime(entry: BoardTime, t: Translate): string {
  const h = (entry.standing === "overdue" ? entry.hours_overdue : entry.hours_left) ?? 0;
  const hours = Number.isInteger(h) ? String(h) : h.toFixed(1);
  if (entry.standing === "overdue") {
    return entry.basis === "working" ? t("sla.over.working", { h: hours }) : t("sla.over.calendar", { h: hours });
  }
  return entry.basis === "working" ? t("sla.left.working", { h: hours }) : t("sla.left.calendar", { h: hours });
}
