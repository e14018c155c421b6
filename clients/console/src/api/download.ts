/**
 * Spreadsheet downloads. A plain link cannot carry the bearer token, so the console fetches the workbook with it
 * and hands the browser the bytes as a file, named as the service names it (Content-Disposition).
 */
import { errorOf } from "./client";
import { ApiError } from "./problem";

const XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/** The file name a Content-Disposition header gives (RFC 6266: `filename*` in UTF-8 first), or `fallback`. */
export function filenameFrom(header: string | null, fallback: string): string {
  if (!header) {
    return fallback;
  }
  const encoded = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(header);
  if (encoded?.[1]) {
    try {
      return safeName(decodeURIComponent(encoded[1].trim()), fallback);
    } catch {
      // a malformed escape: try the plain form
    }
  }
  const plain = /filename\s*=\s*(?:"([^"]*)"|([^;]+))/i.exec(header);
  return safeName((plain?.[1] ?? plain?.[2] ?? "").trim(), fallback);
}

/** A name without folders, which a save dialog would otherwise show (or a browser refuse). */
function safeName(name: string, fallback: string): string {
  const base = name.split(/[/\\]/).pop() ?? "";
  return base && base !== "." && base !== ".." ? base : fallback;
}

/** GET `url` with the caller's token and save what it answers as a file; an ApiError when it is refused. */
export async function downloadSpreadsheet(url: string, token: string | null, fallback: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch(url, {
      headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), Accept: `${XLSX}, application/problem+json` },
      signal: AbortSignal.timeout(60_000),
    });
  } catch {
    throw new ApiError(0, null);
  }
  if (!response.ok) {
    throw errorOf(response, await response.json().catch(() => null));
  }
  const name = filenameFrom(response.headers.get("Content-Disposition"), fallback);
  const address = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = address;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(address), 10_000);
  return name;
}
