/**
 * The console's routes (history mode: the console's server answers every path with the app). Each screen is a
 * chunk of its own, loaded when it is first opened. A route names the roles it serves; the shell shows a
 * forbidden state to any other role, and the sign-in page to a tab with no session.
 */
import { createRouter, createWebHistory, type RouteLocationRaw, type Router } from "vue-router";

import type { EndReason } from "@/auth/store";
import { STAFF_ROLES, type StaffRole } from "@/auth/token";

declare module "vue-router" {
  interface RouteMeta {
    /** Open without a session (the sign-in page, a page that is not there). */
    public?: boolean;
    /** The roles this screen serves (default: every staff role). */
    roles?: readonly StaffRole[];
  }
}

/** Where a role lands: the office at its triage queue, the others at their cases. */
export function landing(role: string | null): string {
  return role === "office" ? "/triage" : "/cases";
}

export function signInRoute(reason: EndReason, next?: string): RouteLocationRaw {
  return { path: "/sign-in", query: { reason, ...(next && next !== "/sign-in" ? { next } : {}) } };
}

export function createConsoleRouter(session: () => { role: string | null; reason: EndReason }): Router {
  const router = createRouter({
    history: createWebHistory(),
    routes: [
      { path: "/", redirect: () => landing(session().role) },
      { path: "/triage", component: () => import("@/views/TriageView.vue"), meta: { roles: ["office"] } },
      { path: "/cases", component: () => import("@/views/CasesView.vue"), meta: { roles: STAFF_ROLES } },
      { path: "/cases/:caseId", component: () => import("@/views/CaseView.vue"), props: true,
        meta: { roles: STAFF_ROLES } },
      { path: "/map", component: () => import("@/views/MapView.vue"),
        meta: { roles: ["office", "department", "grid_leader"] } },
      { path: "/sla", component: () => import("@/views/SlaView.vue"), meta: { roles: ["office", "department"] } },
      { path: "/stats", component: () => import("@/views/StatsView.vue"), meta: { roles: ["office"] } },
      { path: "/weekly", component: () => import("@/views/WeeklyView.vue"), meta: { roles: ["grid_leader", "office"] } },
      { path: "/grids/:gridId/weekly", component: () => import("@/views/WeeklyView.vue"), props: true,
        meta: { roles: ["grid_leader", "office"] } },
      { path: "/sign-in", component: () => import("@/views/SignInView.vue"), meta: { public: true } },
      { path: "/:unknown(.*)*", component: () => import("@/views/NotFoundView.vue"), meta: { public: true } },
    ],
  });
  router.beforeEach((to) => {
    const { role, reason } = session();
    if (!to.meta.public && role === null) {
      return signInRoute(reason, to.fullPath);
    }
    return true;
  });
  return router;
}
