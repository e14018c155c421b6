/**
 * The console's two languages: Chinese first, English on request (kept in localStorage, a preference, not a
 * secret). A message is a flat key; `{name}` in a message is filled from the parameters.
 */
import { computed, ref } from "vue";

import en from "./en";
import zhCN, { type MessageKey } from "./zh-CN";

export type { MessageKey };
export const LOCALES = ["zh-CN", "en"] as const;
export type Locale = (typeof LOCALES)[number];
export type Params = Record<string, string | number>;
export type Translate = (key: MessageKey, params?: Params) => string;

const CATALOGUES: Record<Locale, Record<MessageKey, string>> = { "zh-CN": zhCN, en };
const STORED = "woodpecker.console.locale";

export const locale = ref<Locale>(initialLocale());

/** The message in this catalogue, its `{name}`s filled in. */
export function translate(catalogue: Record<MessageKey, string>, key: MessageKey, params: Params = {}): string {
  return catalogue[key].replace(/\{(\w+)\}/g, (whole, name: string) =>
    name in params ? String(params[name]) : whole);
}

/** The message in the current language (reactive: a template that calls it follows a language switch). */
export const t: Translate = (key, params) => translate(CATALOGUES[locale.value], key, params);

/** Whether the catalogue has this key: field names and actions from the services may be new to the console. */
export function has(key: string): key is MessageKey {
  return key in zhCN;
}

export function setLocale(next: Locale): void {
  locale.value = next;
  localStorage.setItem(STORED, next);
  document.documentElement.lang = next;
}

export const isChinese = computed(() => locale.value === "zh-CN");

function initialLocale(): Locale {
  const stored = typeof localStorage === "undefined" ? null : localStorage.getItem(STORED);
  return stored === "en" ? "en" : "zh-CN";
}
