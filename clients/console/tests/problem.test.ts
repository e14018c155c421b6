import { describe, expect, it } from "vitest";

import { ApiError, describe as word, isProblem } from "@/api/problem";
import { translate, type MessageKey, type Params } from "@/i18n";
import en from "@/i18n/en";
import zhCN from "@/i18n/zh-CN";

const inChinese = (key: MessageKey, params?: Params) => translate(zhCN, key, params);
const inEnglish = (key: MessageKey, params?: Params) => translate(en, key, params);

const invalid = {
  type: "https://woodpecker.example/problems/invalid-fields", title: "Invalid fields", status: 422,
  detail: "Some fields are invalid; see errors.",
  errors: { reason: ["Length must be between 2 and 1000."], photo_ids: ["Not a photo your department uploaded."],
    mystery: ["Unknown field."] },
};

describe("a problem+json in words", () => {
  it("says what happened in the reader's language, then the service's detail and each field", () => {
    const wording = word(new ApiError(422, invalid, null, "req-1"), inChinese);
    expect(wording.headline).toBe("填写的内容有误，请检查后再提交。");
    expect(wording.detail).toBe("Some fields are invalid; see errors.");
    expect(wording.fields).toEqual(["理由：Length must be between 2 and 1000.",
      "整改照片：Not a photo your department uploaded.", "mystery：Unknown field."]);
    expect(wording.requestId).toBe("req-1");
  });

  it("names a field it does not know by the field's own name", () => {
    expect(word(new ApiError(422, invalid), inEnglish).fields).toContain("mystery：Unknown field.");
  });

  it.each([
    [409, "案件状态已变化，此操作现在不能进行。请刷新后查看。"],
    [404, "未找到，或不在您的权限范围内。"],
    [403, "您的角色无权进行此操作。"],
    [401, "登录已失效，请重新登录。"],
    [415, "不支持的文件类型，请上传 JPEG、PNG 或 WebP 图片。"],
    [502, "服务出错（502），请稍后再试。"],
    [418, "请求未成功（418）。"],
  ])("a %i has its own headline", (status, headline) => {
    const problem = { type: "about:blank", title: "x", status, detail: "Cannot accept a case that is accepted." };
    const wording = word(new ApiError(status, problem), inChinese);
    expect(wording.headline).toBe(headline);
    expect(wording.detail).toBe("Cannot accept a case that is accepted.");
  });

  it("says when to try again after a 429", () => {
    expect(word(new ApiError(429, null, 30), inEnglish).headline).toBe("Too many requests; try again in 30 s.");
  });

  it("says the service was not reached when nothing answered", () => {
    const wording = word(new ApiError(0, null), inEnglish);
    expect(wording.headline).toBe("The service could not be reached. Check the network and try again.");
    expect(wording.detail).toBeNull();
    expect(wording.fields).toEqual([]);
  });

  it("words an error that is not an API answer as unexpected, with its message", () => {
    expect(word(new TypeError("boom"), inEnglish)).toMatchObject({ headline: "Something unexpected went wrong.",
      detail: "boom" });
  });

  it("recognises a problem body only when it has the RFC 9457 members", () => {
    expect(isProblem(invalid)).toBe(true);
    expect(isProblem({ title: "x", status: 500 })).toBe(false);
    expect(isProblem("<html>Bad gateway</html>")).toBe(false);
  });
});
