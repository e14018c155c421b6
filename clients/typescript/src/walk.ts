/**
 * One report from photo upload to its closed status, then the department league table, over the services'
 * documents: every request and every answer is typed by what openapi-typescript generated from the running
 * services, so a document change that would break a front end breaks this program's type check (make test).
 *
 * Run it against `make up` (docs/api.md, "The TypeScript example"): INTAKE_URL, ROUTING_URL, HOURS_URL and
 * NOTIFY_URL default to its ports; VOLUNTEER_TOKEN, DEPARTMENT_TOKEN and OFFICE_TOKEN are required, the
 * department's for the department the CATEGORY (default traffic.parking) is routed to (traffic-police).
 * Optional arguments: a before and an after photo (JPEG); without them a small sample is sent.
 */
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";

import type { components as Intake, paths as IntakePaths } from "../generated/intake.js";
import type { paths as HoursPaths } from "../generated/hours.js";
import type { paths as NotifyPaths } from "../generated/notify.js";
import type { components as Routing, paths as RoutingPaths } from "../generated/routing.js";
import { ApiError, Service, sleep } from "./api.js";

type Report = Intake["schemas"]["Report"];
type ReportCreate = Intake["schemas"]["ReportCreate"];
type Case = Routing["schemas"]["Case"];
type CasePage = Routing["schemas"]["CasePage"];
type CaseQuery = NonNullable<RoutingPaths["/v1/cases"]["get"]["parameters"]["query"]>;
type LeagueRow = Routing["schemas"]["DepartmentRow"];

// A 16×16 JPEG, for a walk without photos of one's own.
const SAMPLE_JPEG = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAAQABADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDXooor5E9s/9k=";
const WAIT_MS = 60_000;

const intake = new Service<IntakePaths>(setting("INTAKE_URL", "http://127.0.0.1:8001"));
const routing = new Service<RoutingPaths>(setting("ROUTING_URL", "http://127.0.0.1:8002"));
const hours = new Service<HoursPaths>(setting("HOURS_URL", "http://127.0.0.1:8003"));
const notify = new Service<NotifyPaths>(setting("NOTIFY_URL", "http://127.0.0.1:8004"));
const volunteer = token("VOLUNTEER_TOKEN", "ROLE=volunteer SUB=vol-1");
const department = token("DEPARTMENT_TOKEN", "ROLE=department SUB=police-1 DEPT=traffic-police");
const office = token("OFFICE_TOKEN", "ROLE=office SUB=office-1");

async function walk(beforePath?: string, afterPath?: string): Promise<void> {
  for (const service of [intake, routing, hours, notify]) {
    const ready = await service.get("/readyz", { token: office });
    console.log(`${service.baseUrl}: ${ready.body.status}`);
  }

  // The volunteer: a photo, then a report naming it. The retry with the same Idempotency-Key (as after a
  // lost answer) creates nothing and answers with the same report.
  const before = await intake.upload("/v1/photos", { token: volunteer, form: { file: await photo(beforePath) } });
  const submission: ReportCreate = {
    category: setting("CATEGORY", "traffic.parking"),
    description: "人行道上停放多辆机动车，影响通行",
    location: somewhereInLanshan01(),
    photo_ids: [before.body.id],
  };
  const key = randomUUID();
  const submitted = await intake.post("/v1/reports", {
    token: volunteer, headers: { "Idempotency-Key": key }, body: submission,
  });
  const replayed = await intake.post("/v1/reports", {
    token: volunteer, headers: { "Idempotency-Key": key }, body: submission,
  });
  const reportId = submitted.body.id;
  if (replayed.body.id !== reportId || replayed.headers.get("Idempotent-Replayed") !== "true") {
    throw new Error("The retry with the same Idempotency-Key was not answered with the same report.");
  }
  const report = (await intake.get("/v1/reports/{report_id}", { token: volunteer, path: { report_id: reportId } })).body;
  console.log(`report ${reportId}: ${report.status} in grid ${report.grid_id}, photo ${before.body.id}`);

  // The department: its after-photo, the case among its dispatched ones, accept, rectify.
  const after = await intake.upload("/v1/photos", { token: department, form: { file: await photo(afterPath) } });
  const dispatched = await until("the case dispatched to the department", () => dispatchedCaseOf(reportId));
  const caseId = dispatched.id;
  console.log(`case ${caseId}: dispatched to ${dispatched.department}, due ${dispatched.due_at}`);
  await routing.post("/v1/cases/{case_id}/accept", { token: department, path: { case_id: caseId } });
  const rectified = await routing.post("/v1/cases/{case_id}/rectify", {
    token: department, path: { case_id: caseId }, body: { note: "已联系车主挪车", photo_ids: [after.body.id] },
  });
  console.log(`case ${caseId}: ${rectified.body.status}`);

  // The office checks the fix; the volunteer sees the report follow the case to closed.
  const verified = await routing.post("/v1/cases/{case_id}/verify", {
    token: office, path: { case_id: caseId }, body: { passed: true, note: "复查通过" },
  });
  console.log(`case ${caseId}: ${verified.body.status}`);
  const closed = await until("the report closed", async () => {
    const { body } = await intake.get("/v1/reports/{report_id}", { token: volunteer, path: { report_id: reportId } });
    return body.status === "closed" ? body : null;
  });
  printTimeline(closed);

  const league = await routing.get("/v1/stats/departments", { token: office });
  console.log(`department league table, ${league.body.from} to ${league.body.to}:`);
  console.table(league.body.items.map(leagueLine));
}

/** The department's dispatched cases, newest first, page by page, until the one holding the report. */
async function dispatchedCaseOf(reportId: string): Promise<Case | null> {
  let cursor: string | null = null;
  do {
    const query: CaseQuery = cursor ? { status: "dispatched", cursor } : { status: "dispatched" };
    const page: CasePage = (await routing.get("/v1/cases", { token: department, query })).body;
    const found = page.items.find((item) => item.report_ids.includes(reportId));
    if (found) {
      return found;
    }
    cursor = page.next_cursor;
  } while (cursor);
  return null;
}

function printTimeline(report: Report): void {
  console.log(`report ${report.id}: ${report.status}`);
  for (const step of report.timeline) {
    console.log(`  ${step.at}  ${step.status}  ${step.note}`);
  }
}

function leagueLine(row: LeagueRow): Record<string, string | number> {
  const percent = (rate: number | null) => (rate === null ? "—" : `${(rate * 100).toFixed(1)} %`);
  return {
    rank: row.rank, department: row.department_name, due: row.due,
    deferred: row.deferred, closed_on_time: row.closed_on_time, on_time: percent(row.on_time_rate),
    overdue_open: row.overdue_open, rework: percent(row.rework_rate),
    avg_hours_to_rectify: row.avg_hours_to_rectify?.toFixed(1) ?? "—",
  };
}

/** A point in the demo city's grid cell lanshan-01, a few hundred metres off the last one, so that runs rarely
 * join each other's case (a report within 250 m of an open case of its category joins that case). */
function somewhereInLanshan01(): ReportCreate["location"] {
  return { lat: 35.059 + (Math.random() - 0.5) * 0.03, lng: 118.315 + (Math.random() - 0.5) * 0.02, address: "金雀山路" };
}

async function photo(path?: string): Promise<File> {
  const bytes = path ? await readFile(path) : Buffer.from(SAMPLE_JPEG, "base64");
  return new File([bytes], path ? basename(path) : "sample.jpg", { type: "image/jpeg" });
}

async function until<T>(what: string, check: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const found = await check();
    if (found !== null) {
      return found;
    }
    if (Date.now() > deadline) {
      throw new Error(`Waited ${WAIT_MS / 1000} s for ${what}.`);
    }
    await sleep(500);
  }
}

function setting(name: string, fallback: string): string {
  return process.env[name] || fallback;
}

function token(name: string, makeArguments: string): string {
  const value = process.env[name];
  if (!value) {
    console.error(`Set ${name}, e.g. export ${name}=$(make -s token ${makeArguments})`);
    process.exit(2);
  }
  return value;
}

walk(process.argv[2], process.argv[3]).catch((error: unknown) => {
  if (error instanceof ApiError) {
    console.error(`${error.message}${error.problem ? ` [${error.problem.type}]` : ""} (request ${error.requestId})`);
  } else {
    console.error(error);
  }
  process.exit(1);
});
