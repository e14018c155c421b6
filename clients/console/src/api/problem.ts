/**
 * API errors in words. Every service answers an error with problem+json (RFC 9457): a status, a title, a
 * detail and, for invalid fields, `errors: {field: [messages]}`. The console says what happened in the
 * reader's language (by status), then the service's own detail and each field's messages.
 */
import { has, type MessageKey, type Translate } from "@/i18n";

/** RFC 9457 problem details, as each service's document states them. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  errors?: Record<string, string[]>;
}

/** An error answer (status 0: the service was not reached at all). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | null,
    readonly retryAfterS: number | null = null,
    readonly requestId: string | null = null,
  ) {
    super(problem ? `${status} ${problem.title}: ${problem.detail}` : `HTTP ${status}`);
    this.name = "ApiError";
  }
}

export interface Wording {
  headline: string;
  /** The service's own explanation, when it gave one. */
  detail: string | null;
  /** "field: messages", one per invalid field. */
  fields: string[];
  requestId: string | null;
}

const HEADLINES: Record<number, MessageKey> = {
  0: "problem.unreachable",
  400: "problem.malformed",
  401: "problem.unauthorized",
  403: "problem.forbidden",
  404: "problem.notFound",
  409: "problem.conflict",
  413: "problem.tooLarge",
  415: "problem.unsupported",
  422: "problem.invalid",
  429: "problem.rateLimited",
  503: "problem.unavailable",
};

export function isProblem(value: unknown): value is Problem {
  if (typeof value !== "object" || value === null) {
    return false;
  }
  const fields: Record<string, unknown> = { ...value };
  return typeof fields.type === "string" && typeof fields.title === "string"
    && typeof fields.status === "number" && typeof fields.detail === "string";
}

/** What to tell the reader about `error` (an ApiError, or anything a screen caught). */
export function describe(error: unknown, t: Translate): Wording {
  if (!(error instanceof ApiError)) {
    return { headline: t("problem.unexpected"), detail: error instanceof Error ? error.message : null, fields: [],
      requestId: null };
  }
  const key = HEADLINES[error.status] ?? (error.status >= 500 ? "problem.server" : "problem.other");
  const headline = t(key, { status: error.status, seconds: error.retryAfterS ?? "?" });
  const problem = error.problem;
  const fields = Object.entries(problem?.errors ?? {}).map(([field, messages]) =>
    `${fieldName(field, t)}：${messages.join(" ")}`);
  return { headline, detail: problem?.detail || null, fields, requestId: error.requestId };
}

/** A field the console knows by its label; another by its own name. */
function fieldName(field: string, t: Translate): string {
  const key = `field.${field}`;
  return has(key) ? t(key) : field;
}
