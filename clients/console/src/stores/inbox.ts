/**
 * The caller's notices (notify's inbox): the unread count for the bell on every page, refreshed every minute
 * and after each page change, and the latest notices when the bell is opened.
 */
import { defineStore } from "pinia";
import { ref } from "vue";

import { ok, useApi } from "@/api/client";
import type { components } from "@/api/generated/notify";

export type Notice = components["schemas"]["InboxItem"];

const LATEST = 10;

export const useInbox = defineStore("inbox", () => {
  const unread = ref<number | null>(null);
  const latest = ref<Notice[]>([]);
  const failure = ref<unknown>(null);

  async function count(): Promise<void> {
    try {
      unread.value = (await ok(useApi().notify.GET("/v1/inbox/unread-count"))).unread;
    } catch {
      unread.value = null;  // the bell shows no number rather than a stale one
    }
  }

  async function open(): Promise<void> {
    failure.value = null;
    try {
      latest.value = (await ok(useApi().notify.GET("/v1/inbox", { params: { query: { limit: LATEST } } }))).items;
    } catch (error) {
      failure.value = error;
    }
  }

  async function markRead(notice: Notice): Promise<void> {
    if (notice.read_at !== null) {
      return;
    }
    const read = await ok(useApi().notify.POST("/v1/inbox/{item_id}/read", { params: { path: { item_id: notice.id } } }));
    latest.value = latest.value.map((n) => (n.id === read.id ? read : n));
    await count();
  }

  async function markAllRead(): Promise<void> {
    await ok(useApi().notify.POST("/v1/inbox/read-all"));
    await Promise.all([count(), open()]);
  }

  return { unread, latest, failure, count, open, markRead, markAllRead };
});

/** The console route a notice's link names (`…/cases/<id>`), if it names one. */
export function consoleRoute(link: string): string | null {
  let path: string;
  try {
    path = new URL(link, "http://console.invalid").pathname;
  } catch {
    return null;
  }
  const found = /^\/cases\/([A-Za-z0-9_.:-]{1,128})$/.exec(path);
  return found ? `/cases/${found[1]}` : null;
}
