/**
 * The commands a case offers its caller: exactly those routing allows for the caller's role and the case's
 * status (and its extension request), from one table (actions.json) that a service test checks against
 * routing itself. The console only hides what the service would refuse; the service still decides.
 */
import table from "./actions.json";

export const CASE_ACTIONS = ["dispatch", "accept", "dispute", "rectify", "extension", "extension/decision", "verify",
  "reject", "merge"] as const;
export type CaseAction = (typeof CASE_ACTIONS)[number];

/** Whether an extension request must be waiting for the office's decision, must not be, or does not matter. */
type ExtensionCondition = "any" | "waiting" | "none_waiting";

interface Rule {
  roles: readonly string[];
  statuses: readonly string[];
  extension: ExtensionCondition;
}

/** What the table needs of a case: its status and its extension request. */
export interface CaseState {
  status: string;
  extension: { status?: string } | null;
}

const RULES: Record<CaseAction, Rule> = {
  dispatch: rule(table.dispatch),
  accept: rule(table.accept),
  dispute: rule(table.dispute),
  rectify: rule(table.rectify),
  extension: rule(table.extension),
  "extension/decision": rule(table["extension/decision"]),
  verify: rule(table.verify),
  reject: rule(table.reject),
  merge: rule(table.merge),
};

/** The commands `role` may send to a case in this state, in the table's order. */
export function allowedActions(state: CaseState, role: string): CaseAction[] {
  const waiting = state.extension?.status === "requested";
  return CASE_ACTIONS.filter((action) => {
    const { roles, statuses, extension } = RULES[action];
    return roles.includes(role) && statuses.includes(state.status)
      && (extension === "any" || (extension === "waiting") === waiting);
  });
}

function rule(entry: { roles: string[]; statuses: string[]; extension: string }): Rule {
  if (entry.extension !== "any" && entry.extension !== "waiting" && entry.extension !== "none_waiting") {
    throw new Error(`actions.json: unknown extension condition ${entry.extension}`);
  }
  return { roles: entry.roles, statuses: entry.statuses, extension: entry.extension };
}
