import { describe, expect, it } from "vitest";

import { translate, type MessageKey, type Params } from "@/i18n";
import zhCN from "@/i18n/zh-CN";
import { consoleRoute } from "@/stores/inbox";
import { duration, localTime } from "@/time";
import { parseConfig } from "@/config";

const t = (key: MessageKey, params?: Params) => translate(zhCN, key, params);

describe("times", () => {
  it("are shown in the city's zone, whatever the browser's", () => {
    expect(localTime("2026-11-24T16:31:00Z", "Asia/Shanghai")).toBe("2026-11-25 00:31");
    expect(localTime("2026-11-24T16:31:00Z", "UTC")).toBe("2026-11-24 16:31");
  });

  it.each([
    [59_000, "0 分钟"],
    [25 * 60_000, "25 分钟"],
    [3 * 3_600_000, "3 小时"],
    [3 * 3_600_000 + 20 * 60_000, "3 小时 20 分"],
    [-(26 * 3_600_000), "1 天 2 小时"],
  ])("%i ms reads %s", (ms, words) => {
    expect(duration(ms, t)).toBe(words);
  });
});

describe("a notice's link", () => {
  it("opens a case in the console", () => {
    expect(consoleRoute("http://127.0.0.1:8000/cases/case-6b05631890746481")).toBe("/cases/case-6b05631890746481");
  });

  it.each(["http://127.0.0.1:8001/reports/6b05", "https://city.example/me/hours", "not a link",
    "http://x/cases/a/../../admin"])("%s opens nothing here", (link) => {
    expect(consoleRoute(link)).toBeNull();
  });
});

describe("the console's configuration", () => {
  it("names each service and the city's zone", () => {
    const services = { intake: "http://a:1", routing: "http://a:2", hours: "http://a:3", notify: "http://a:4" };
    expect(parseConfig({ services, timeZone: "Asia/Shanghai" })).toEqual({ services, timeZone: "Asia/Shanghai",
      oidc: null, tiles: null });
  });

  it("is refused when a service is missing", () => {
    expect(() => parseConfig({ services: { intake: "http://a:1" }, timeZone: "Asia/Shanghai" })).toThrow(/routing/);
  });
});
